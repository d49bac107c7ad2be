/*
 * bench/loadgen.c: the load generator of `npm run bench`.
 *
 * One thread, one epoll loop, non-blocking sockets: on a 2-core machine the load side gets one
 * core, so the client must cost far less than the proxy it measures. It speaks SOCKS5 (no auth,
 * CONNECT with an IPv4 address, waiting for each reply as curl does) to the proxy, or goes
 * straight to the destination (no --proxy: the limit of the machine), and then talks to
 * bench/sink.c with a 16-byte request (see sink.c for the format).
 *
 * Modes (every loop is bounded by a count and by --timeout seconds):
 *   bulk-down   --streams N --bytes B: N tunnels are opened first; then each receives B bytes.
 *               Time runs from the first request to the last byte.
 *   bulk-up     --streams N --bytes B: each tunnel sends B bytes and waits for the sink's
 *               one-byte acknowledgement.
 *   handshake   --concurrency C --duration S: C connections in flight; each does greeting,
 *               CONNECT, a 16-byte request, reads the 64-byte response and the close that
 *               follows it (the sink closes first), then closes; then the slot starts again.
 *               Counts what completes within S seconds; time to first byte is measured from
 *               connect() to the first response byte (handshake included). With --rate R
 *               (handshakes per second) no more than R·t connections start by time t, still
 *               at most C in flight: a paced load that every proxy measured gets alike.
 *   idle        --tunnels N --concurrency C: open N tunnels (each does one request/response),
 *               print {"event":"ready",...}, hold them until stdin gets a line or EOF (or --hold
 *               seconds), then close them and print the result.
 *
 * Addresses: --proxy 127.0.0.1:PORT, --dest-port P with --dest-addrs K (the sink listens on
 * 127.0.0.1..127.0.0.K), --src-addrs K (bind the client to 127.0.0.1..K, IP_BIND_ADDRESS_NO_PORT).
 * Only 127.0.0.0/8 is ever used.
 *
 * Output: one JSON line with the results on stdout (idle: a ready line first). Exit 0 when the
 * run completed, 2 on timeout (a partial result is still printed), 64 on bad arguments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BULK_CHUNK (1 << 20)
#define REQ_LEN 16
#define RESP_LEN 64
#define STDIN_TAG 0xffffffffu
#define MAX_SAMPLES (4u << 20)

enum { MODE_DOWN, MODE_UP, MODE_HS, MODE_IDLE };
enum { P_FREE, P_CONNECT, P_GREET, P_REPLY, P_READY, P_RESP, P_EOF, P_DOWN, P_UP, P_ACK, P_IDLE, P_DONE };

struct slot {
  int fd;
  uint8_t phase;
  uint8_t want_out;
  uint16_t got, need;
  uint8_t msg[32];
  uint32_t dest_ip; /* host order */
  double t0, t_first;
  uint64_t remaining;
  int first_byte;
};

/* ---- options ---- */
static int mode;
static int use_proxy = 0;
static uint32_t proxy_ip = 0x7f000001u;
static uint16_t proxy_port = 0;
static uint16_t dest_port = 0;
static int dest_addrs = 8, src_addrs = 8;
static int streams = 1;
static uint64_t bytes_per_stream = 1ull << 30;
static double duration = 10;
static int concurrency = 64;
/* --rate: handshakes started per second (0: as fast as the slots free up). */
static double rate_limit = 0;
static unsigned long long hs_started = 0;
static int tunnels = 1000;
static double timeout_s = 120;
static double hold_s = 300;

/* ---- state ---- */
static int epfd;
static struct slot *slots;
static int nslots;
static char *big;
static uint64_t conn_counter = 0;
static uint64_t errors = 0, completed = 0, established = 0, finished = 0, dropped = 0;
static uint32_t *ttfb_us, *total_us;
static size_t nsamples = 0;
static double window_start = 0, window_end = 0;
static int window_open = 0, window_closed = 0;
static char last_error[160] = "";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void cpu_times(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void note_error(const char *what, int err) {
  errors++;
  snprintf(last_error, sizeof last_error, "%s: %s", what, err ? strerror(err) : "unexpected bytes or EOF");
}

static void set_events(struct slot *s, int out) {
  if (s->want_out == out) return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = (uint32_t)(s - slots)};
  epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
  s->want_out = (uint8_t)out;
}

static void slot_close(struct slot *s) {
  if (s->fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
  }
  s->fd = -1;
  s->phase = P_FREE;
}

static int send_all_small(struct slot *s, const void *buf, size_t len) {
  ssize_t w = send(s->fd, buf, len, MSG_NOSIGNAL);
  if (w != (ssize_t)len) {
    note_error("send", w < 0 ? errno : 0);
    return -1;
  }
  return 0;
}

static int start_conn(struct slot *s) {
  uint64_t k = conn_counter++;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (s->fd < 0) {
    note_error("socket", errno);
    s->phase = P_FREE;
    return -1;
  }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (src_addrs > 1) {
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(k % (uint64_t)src_addrs));
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) < 0) {
      note_error("bind", errno);
      slot_close(s);
      return -1;
    }
  }
  s->dest_ip = 0x7f000001u + (uint32_t)((k / (uint64_t)src_addrs) % (uint64_t)dest_addrs);
  struct sockaddr_in to = {.sin_family = AF_INET};
  if (use_proxy) {
    to.sin_addr.s_addr = htonl(proxy_ip);
    to.sin_port = htons(proxy_port);
  } else {
    to.sin_addr.s_addr = htonl(s->dest_ip);
    to.sin_port = htons(dest_port);
  }
  s->t0 = now_s();
  s->got = s->need = 0;
  s->first_byte = 0;
  s->remaining = 0;
  if (connect(s->fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) {
    note_error("connect", errno);
    slot_close(s);
    return -1;
  }
  s->phase = P_CONNECT;
  s->want_out = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(s - slots)};
  epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
  return 0;
}

static void make_req(uint8_t req[REQ_LEN], uint8_t m, uint64_t n) {
  memset(req, 0, REQ_LEN);
  req[0] = m;
  for (int k = 15; k >= 8; k--) {
    req[k] = (uint8_t)(n & 0xff);
    n >>= 8;
  }
}

/* The tunnel is up (or the direct connection is): go on with the mode's exchange. */
static int tunnel_up(struct slot *s) {
  set_events(s, 0);
  if (mode == MODE_HS || mode == MODE_IDLE) {
    uint8_t req[REQ_LEN];
    make_req(req, mode == MODE_HS ? 3 : 4, 0);
    if (send_all_small(s, req, REQ_LEN) < 0) return -1;
    s->phase = P_RESP;
    s->got = 0;
    s->need = RESP_LEN;
  } else {
    s->phase = P_READY;
    established++;
  }
  return 0;
}

static void start_bulk(void) {
  for (int i = 0; i < nslots; i++) {
    struct slot *s = &slots[i];
    if (s->phase != P_READY) continue;
    uint8_t req[REQ_LEN];
    make_req(req, mode == MODE_DOWN ? 1 : 2, bytes_per_stream);
    if (send_all_small(s, req, REQ_LEN) < 0) {
      slot_close(s);
      continue;
    }
    s->remaining = bytes_per_stream;
    if (mode == MODE_DOWN) {
      s->phase = P_DOWN;
    } else {
      s->phase = P_UP;
      set_events(s, 1);
    }
  }
}

static void sample(struct slot *s, double t_first, double t_end) {
  if (nsamples >= MAX_SAMPLES) return;
  ttfb_us[nsamples] = (uint32_t)((t_first - s->t0) * 1e6);
  total_us[nsamples] = (uint32_t)((t_end - s->t0) * 1e6);
  nsamples++;
}

/* Returns -1 when the slot failed (the caller closes it). */
static int on_event(struct slot *s, uint32_t events) {
  if (s->phase == P_CONNECT) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      note_error("connect", err);
      return -1;
    }
    if (!(events & (EPOLLOUT | EPOLLIN))) return 0;
    if (use_proxy) {
      static const uint8_t greeting[3] = {5, 1, 0}; /* RFC 1928 §3: VER, NMETHODS, NO AUTH */
      if (send_all_small(s, greeting, 3) < 0) return -1;
      s->phase = P_GREET;
      s->got = 0;
      s->need = 2;
      set_events(s, 0);
      return 0;
    }
    return tunnel_up(s);
  }
  if (s->phase == P_UP && (events & EPOLLOUT)) {
    for (int i = 0; i < 64 && s->remaining > 0; i++) {
      size_t n = s->remaining < BULK_CHUNK ? (size_t)s->remaining : BULK_CHUNK;
      ssize_t w = send(s->fd, big, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        note_error("send", errno);
        return -1;
      }
      s->remaining -= (uint64_t)w;
    }
    if (s->remaining == 0) {
      s->phase = P_ACK;
      set_events(s, 0);
    }
    if (!(events & EPOLLIN)) return 0;
  }
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return 0;

  for (int iter = 0; iter < 64; iter++) {
    switch (s->phase) {
      case P_GREET:
      case P_REPLY: {
        ssize_t r = recv(s->fd, s->msg + s->got, (size_t)(s->need - s->got), 0);
        if (r == 0) {
          note_error(s->phase == P_GREET ? "method reply" : "connect reply", 0);
          return -1;
        }
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
          note_error("recv", errno);
          return -1;
        }
        s->got += (uint16_t)r;
        if (s->got < s->need) continue;
        if (s->phase == P_GREET) {
          if (s->msg[0] != 5 || s->msg[1] != 0) {
            note_error("method reply", 0);
            return -1;
          }
          /* RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT */
          uint8_t req[10] = {5, 1, 0, 1, (uint8_t)(s->dest_ip >> 24), (uint8_t)(s->dest_ip >> 16), (uint8_t)(s->dest_ip >> 8),
                             (uint8_t)s->dest_ip, (uint8_t)(dest_port >> 8), (uint8_t)dest_port};
          if (send_all_small(s, req, sizeof req) < 0) return -1;
          s->phase = P_REPLY;
          s->got = 0;
          s->need = 5;
          continue;
        }
        if (s->need == 5) {
          /* RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT */
          if (s->msg[0] != 5 || s->msg[1] != 0) {
            char what[48];
            snprintf(what, sizeof what, "connect reply rep=%d", s->msg[1]);
            note_error(what, 0);
            return -1;
          }
          uint8_t atyp = s->msg[3];
          s->need = atyp == 1 ? 10 : atyp == 4 ? 22 : atyp == 3 ? (uint16_t)(7 + s->msg[4]) : 0;
          if (s->need == 0 || s->need > sizeof s->msg) {
            note_error("connect reply atyp", 0);
            return -1;
          }
          if (s->got < s->need) continue;
        }
        return tunnel_up(s);
      }
      case P_RESP: {
        char buf[RESP_LEN];
        ssize_t r = recv(s->fd, buf, (size_t)(s->need - s->got), 0);
        if (r == 0) {
          note_error("response", 0);
          return -1;
        }
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
          note_error("recv", errno);
          return -1;
        }
        double t = now_s();
        if (!s->first_byte) {
          s->first_byte = 1;
          s->t_first = t;
        }
        s->got += (uint16_t)r;
        if (s->got < s->need) continue;
        if (mode == MODE_HS) {
          s->phase = P_EOF;
          continue;
        }
        s->phase = P_IDLE;
        established++;
        return 0;
      }
      case P_EOF: {
        char b[64];
        ssize_t r = recv(s->fd, b, sizeof b, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (r != 0) {
          note_error(r > 0 ? "bytes after the response" : "recv", r < 0 ? errno : 0);
          return -1;
        }
        double t = now_s();
        if (window_open && !window_closed && t <= window_end) {
          completed++;
          sample(s, s->t_first, t);
        }
        slot_close(s);
        s->phase = P_DONE;
        return 0;
      }
      case P_DOWN: {
        ssize_t r = recv(s->fd, big, BULK_CHUNK, 0);
        if (r == 0) {
          note_error("bulk stream ended early", 0);
          return -1;
        }
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
          note_error("recv", errno);
          return -1;
        }
        s->remaining = (uint64_t)r >= s->remaining ? 0 : s->remaining - (uint64_t)r;
        if (s->remaining == 0) {
          s->phase = P_DONE;
          finished++;
          return 0;
        }
        continue;
      }
      case P_ACK: {
        char b;
        ssize_t r = recv(s->fd, &b, 1, 0);
        if (r == 1 && b == 'K') {
          s->phase = P_DONE;
          finished++;
          return 0;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        note_error("ack", r < 0 ? errno : 0);
        return -1;
      }
      case P_IDLE: {
        char b[256];
        ssize_t r = recv(s->fd, b, sizeof b, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        dropped++;
        return -1;
      }
      case P_UP:
      case P_READY:
      case P_DONE: {
        /* Nothing is expected here; EOF or data means the tunnel broke. */
        char b[256];
        ssize_t r = recv(s->fd, b, sizeof b, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        note_error("unexpected data or EOF", r < 0 ? errno : 0);
        return -1;
      }
      default:
        return 0;
    }
  }
  return 0;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint32_t pct(uint32_t *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  if (i >= n) i = n - 1;
  return v[i];
}

static int parse_hostport(const char *s, uint32_t *ip, uint16_t *port) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= sizeof host) return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  struct in_addr a;
  if (inet_pton(AF_INET, host, &a) != 1) return -1;
  *ip = ntohl(a.s_addr);
  if ((*ip >> 24) != 127) return -1; /* loopback only */
  long p = strtol(colon + 1, NULL, 10);
  if (p <= 0 || p > 65535) return -1;
  *port = (uint16_t)p;
  return 0;
}

/* Handshake mode: may another connection start at time t under --rate? */
static int hs_may_start(double t) {
  return rate_limit <= 0 || (double)hs_started < (t - window_start) * rate_limit + 1;
}
static void hs_start(struct slot *s) {
  hs_started++;
  start_conn(s);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen bulk-down|bulk-up|handshake|idle [--proxy 127.0.0.1:PORT] --dest-port P [--dest-addrs K]\n"
          "       [--src-addrs K] [--streams N] [--bytes B] [--duration S] [--concurrency C] [--tunnels N]\n"
          "       [--timeout S] [--hold S] [--rate R]\n");
  exit(64);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (!strcmp(argv[1], "bulk-down")) mode = MODE_DOWN;
  else if (!strcmp(argv[1], "bulk-up")) mode = MODE_UP;
  else if (!strcmp(argv[1], "handshake")) mode = MODE_HS;
  else if (!strcmp(argv[1], "idle")) mode = MODE_IDLE;
  else usage();
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--proxy")) {
      if (parse_hostport(v, &proxy_ip, &proxy_port) < 0) usage();
      use_proxy = 1;
    } else if (!strcmp(a, "--dest-port")) dest_port = (uint16_t)atoi(v);
    else if (!strcmp(a, "--dest-addrs")) dest_addrs = atoi(v);
    else if (!strcmp(a, "--src-addrs")) src_addrs = atoi(v);
    else if (!strcmp(a, "--streams")) streams = atoi(v);
    else if (!strcmp(a, "--bytes")) bytes_per_stream = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--duration")) duration = atof(v);
    else if (!strcmp(a, "--concurrency")) concurrency = atoi(v);
    else if (!strcmp(a, "--tunnels")) tunnels = atoi(v);
    else if (!strcmp(a, "--timeout")) timeout_s = atof(v);
    else if (!strcmp(a, "--hold")) hold_s = atof(v);
    else if (!strcmp(a, "--rate")) rate_limit = atof(v);
    else usage();
  }
  if (dest_port == 0 || dest_addrs < 1 || dest_addrs > 16 || src_addrs < 1 || src_addrs > 16) usage();
  if (streams < 1 || streams > 1024 || concurrency < 1 || concurrency > 20000 || tunnels < 1 || tunnels > 100000) usage();
  if (duration <= 0 || duration > 600 || timeout_s <= 0 || timeout_s > 3600 || hold_s < 0 || hold_s > 3600) usage();
  if (rate_limit < 0 || rate_limit > 1e6) usage();

  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  signal(SIGPIPE, SIG_IGN);

  big = malloc(BULK_CHUNK);
  if (!big) return 71;
  memset(big, 'u', BULK_CHUNK);
  nslots = mode == MODE_IDLE ? tunnels : mode == MODE_HS ? concurrency : streams;
  slots = calloc((size_t)nslots, sizeof *slots);
  if (mode == MODE_HS) {
    ttfb_us = malloc(MAX_SAMPLES * sizeof *ttfb_us);
    total_us = malloc(MAX_SAMPLES * sizeof *total_us);
    if (!ttfb_us || !total_us) return 71;
  }
  if (!slots) return 71;
  for (int i = 0; i < nslots; i++) slots[i].fd = -1;
  epfd = epoll_create1(0);

  double t_begin = now_s();
  double deadline = t_begin + timeout_s;
  double u0 = 0, s0 = 0, u1 = 0, s1 = 0;
  int timed_out = 0;
  struct epoll_event evs[512];

  if (mode == MODE_DOWN || mode == MODE_UP) {
    for (int i = 0; i < nslots; i++) start_conn(&slots[i]);
    int started = 0;
    while (now_s() < deadline) {
      if (!started && established + errors >= (uint64_t)nslots) {
        if (errors > 0) break;
        cpu_times(&u0, &s0);
        window_start = now_s();
        start_bulk();
        started = 1;
      }
      if (started && finished + errors >= (uint64_t)nslots) break;
      int n = epoll_wait(epfd, evs, 512, 100);
      for (int i = 0; i < n; i++) {
        struct slot *s = &slots[evs[i].data.u32];
        if (on_event(s, evs[i].events) < 0) slot_close(s);
      }
    }
    window_end = now_s();
    cpu_times(&u1, &s1);
    if (!started || finished < (uint64_t)nslots) timed_out = errors == 0;
    double secs = window_end - window_start;
    uint64_t total = started ? (uint64_t)nslots * bytes_per_stream : 0;
    for (int i = 0; i < nslots; i++) slot_close(&slots[i]);
    printf("{\"mode\":\"%s\",\"ok\":%s,\"streams\":%d,\"bytes\":%llu,\"seconds\":%.6f,\"mbps\":%.3f,\"errors\":%llu,"
           "\"timeout\":%s,\"cpu_user_s\":%.4f,\"cpu_sys_s\":%.4f,\"last_error\":\"%s\"}\n",
           mode == MODE_DOWN ? "bulk-down" : "bulk-up", (finished == (uint64_t)nslots && !errors) ? "true" : "false", nslots,
           (unsigned long long)total, secs, started && secs > 0 && finished == (uint64_t)nslots ? total / secs / 1e6 : 0.0,
           (unsigned long long)errors, timed_out ? "true" : "false", u1 - u0, s1 - s0, last_error);
    return timed_out ? 2 : 0;
  }

  if (mode == MODE_HS) {
    cpu_times(&u0, &s0);
    window_start = now_s();
    window_end = window_start + duration;
    window_open = 1;
    if (window_end + 5 < deadline) deadline = window_end + 5;
    for (int i = 0; i < nslots; i++)
      if (hs_may_start(window_start)) hs_start(&slots[i]);
    int cpu_taken = 0;
    for (;;) {
      double t = now_s();
      if (t >= deadline) {
        timed_out = 1;
        break;
      }
      if (t > window_end && !cpu_taken) {
        cpu_times(&u1, &s1);
        cpu_taken = 1;
        window_closed = 1;
      }
      int busy = 0;
      for (int i = 0; i < nslots; i++) {
        struct slot *s = &slots[i];
        if (s->phase == P_FREE || s->phase == P_DONE) {
          if (t > window_end) s->phase = P_DONE;
          else if (hs_may_start(t)) hs_start(s);
        }
        if (s->phase != P_DONE && s->phase != P_FREE) busy = 1;
      }
      if (!busy && window_closed) break;
      int n = epoll_wait(epfd, evs, 512, rate_limit > 0 ? 1 : 50);
      for (int i = 0; i < n; i++) {
        struct slot *s = &slots[evs[i].data.u32];
        if (on_event(s, evs[i].events) < 0) slot_close(s);
      }
      /* Restart finished slots at once rather than on the next pass: keeps C in flight. */
      double t2 = now_s();
      if (t2 <= window_end)
        for (int i = 0; i < n; i++) {
          struct slot *s = &slots[evs[i].data.u32];
          if ((s->phase == P_FREE || s->phase == P_DONE) && hs_may_start(t2)) hs_start(s);
        }
    }
    if (!cpu_taken) cpu_times(&u1, &s1);
    for (int i = 0; i < nslots; i++) slot_close(&slots[i]);
    qsort(ttfb_us, nsamples, sizeof *ttfb_us, cmp_u32);
    qsort(total_us, nsamples, sizeof *total_us, cmp_u32);
    printf("{\"mode\":\"handshake\",\"ok\":%s,\"concurrency\":%d,\"seconds\":%.6f,\"completed\":%llu,\"rate\":%.1f,\"errors\":%llu,"
           "\"ttfb_us\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,\"max\":%u},\"total_us\":{\"p50\":%u,\"p99\":%u},"
           "\"timeout\":%s,\"cpu_user_s\":%.4f,\"cpu_sys_s\":%.4f,\"last_error\":\"%s\"}\n",
           completed > 0 ? "true" : "false", concurrency, duration, (unsigned long long)completed, completed / duration,
           (unsigned long long)errors, pct(ttfb_us, nsamples, 0.5), pct(ttfb_us, nsamples, 0.9), pct(ttfb_us, nsamples, 0.99),
           nsamples ? ttfb_us[nsamples - 1] : 0, pct(total_us, nsamples, 0.5), pct(total_us, nsamples, 0.99),
           timed_out ? "true" : "false", u1 - u0, s1 - s0, last_error);
    return timed_out ? 2 : 0;
  }

  /* MODE_IDLE */
  cpu_times(&u0, &s0);
  window_start = now_s();
  int next = 0;
  int inflight = 0;
  while (now_s() < deadline && established + errors < (uint64_t)tunnels) {
    while (inflight < concurrency && next < tunnels) {
      if (start_conn(&slots[next]) == 0) inflight++;
      next++;
    }
    int n = epoll_wait(epfd, evs, 512, 100);
    for (int i = 0; i < n; i++) {
      struct slot *s = &slots[evs[i].data.u32];
      uint8_t before = s->phase;
      if (on_event(s, evs[i].events) < 0) {
        slot_close(s);
        if (before != P_IDLE) inflight--;
      } else if (before != P_IDLE && s->phase == P_IDLE) {
        inflight--;
      }
    }
  }
  double open_secs = now_s() - window_start;
  cpu_times(&u1, &s1);
  timed_out = established + errors < (uint64_t)tunnels;
  printf("{\"event\":\"ready\",\"open\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"last_error\":\"%s\"}\n", (unsigned long long)established,
         (unsigned long long)errors, open_secs, last_error);
  fflush(stdout);
  struct epoll_event sev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
  int watch_stdin = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev) == 0;
  double hold_end = now_s() + hold_s;
  if (hold_end > deadline) hold_end = deadline;
  int released = 0;
  while (!released && now_s() < hold_end) {
    int n = epoll_wait(epfd, evs, 512, 100);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u32 == STDIN_TAG) {
        if (watch_stdin) released = 1;
        continue;
      }
      struct slot *s = &slots[evs[i].data.u32];
      if (on_event(s, evs[i].events) < 0) slot_close(s);
    }
  }
  for (int i = 0; i < nslots; i++) slot_close(&slots[i]);
  printf("{\"mode\":\"idle\",\"ok\":%s,\"tunnels\":%d,\"open\":%llu,\"dropped\":%llu,\"errors\":%llu,\"open_seconds\":%.3f,"
         "\"timeout\":%s,\"cpu_user_s\":%.4f,\"cpu_sys_s\":%.4f,\"last_error\":\"%s\"}\n",
         (established == (uint64_t)tunnels && !dropped) ? "true" : "false", tunnels, (unsigned long long)established,
         (unsigned long long)dropped, (unsigned long long)errors, open_secs, timed_out ? "true" : "false", u1 - u0, s1 - s0,
         last_error);
  return timed_out ? 2 : 0;
}
