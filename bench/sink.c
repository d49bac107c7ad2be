/*
 * bench/sink.c: the destination server of `npm run bench`.
 *
 * One thread, one epoll loop, non-blocking sockets, so that it costs the load core as little as
 * possible. It listens on 127.0.0.1 .. 127.0.0.K at one port (several destination addresses
 * spread the proxies' outgoing connections over more 4-tuples, so 10 s of handshakes at 15k/s do
 * not run out of ephemeral ports while the proxy's side sits in TIME_WAIT).
 *
 * Every connection starts with a 16-byte request from the load generator:
 *   byte 0      mode: 1 = bulk down, 2 = bulk up, 3 = request/response/close,
 *               4 = request/response, then stay open
 *   bytes 1..7  ignored (zero)
 *   bytes 8..15 count, big-endian (bytes to send for mode 1, bytes to read for mode 2)
 * mode 1: send `count` bytes, then wait for EOF.
 * mode 2: read `count` bytes, then send one byte 'K', then wait for EOF.
 * mode 3: send a 64-byte response and close (the server closes first, as an HTTP/1.0 server
 *         does: TIME_WAIT then stays here, on the server side of the proxy's outgoing
 *         connection, and costs the proxy no ephemeral port; dante binds its outgoing sockets
 *         to an explicit address, and bind() cannot reuse a port in TIME_WAIT).
 * mode 4: send a 64-byte response, then wait for EOF (idle tunnels).
 * On EOF or error the connection is closed.
 *
 * Loopback only; it stops on SIGTERM/SIGINT, when stdin reaches EOF (the parent died), or after
 * --max-seconds (default 3600).
 *
 * Usage: sink [--addrs K] [--max-seconds S]
 * Prints "sink listening on PORT" on stdout once bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#define MAX_ADDRS 16
#define BULK_CHUNK (1 << 20)
#define REQ_LEN 16
#define RESP_LEN 64

enum { M_NONE = 0, M_DOWN = 1, M_UP = 2, M_RR_CLOSE = 3, M_RR = 4 };

struct conn {
  uint8_t hdr[REQ_LEN];
  uint8_t hdr_len;
  uint8_t mode;
  uint8_t done;      /* finished its part; only waits for EOF */
  uint8_t want_out;  /* EPOLLOUT registered */
  uint64_t remaining;
};

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static struct conn *conns;
static int max_fd;
static int epfd;
static char *bulk_buf;
static char resp[RESP_LEN];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void conn_close(int fd) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  memset(&conns[fd], 0, sizeof(conns[fd]));
}

static void set_out(int fd, int on) {
  struct conn *c = &conns[fd];
  if (c->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.fd = fd};
  epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
  c->want_out = (uint8_t)on;
}

/* Write what this connection owes; returns -1 if it must be closed. */
static int pump_out(int fd) {
  struct conn *c = &conns[fd];
  if (c->mode == M_DOWN) {
    /* Bounded: at most 64 chunks per wake-up so that one stream cannot starve the others. */
    for (int i = 0; i < 64 && c->remaining > 0; i++) {
      size_t n = c->remaining < BULK_CHUNK ? (size_t)c->remaining : BULK_CHUNK;
      ssize_t w = send(fd, bulk_buf, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return -1;
      }
      c->remaining -= (uint64_t)w;
    }
    if (c->remaining == 0) c->done = 1;
    set_out(fd, c->remaining > 0);
  }
  return 0;
}

static int on_readable(int fd) {
  struct conn *c = &conns[fd];
  /* Bounded: at most 64 reads per wake-up. */
  for (int i = 0; i < 64; i++) {
    if (c->hdr_len < REQ_LEN) {
      ssize_t r = recv(fd, c->hdr + c->hdr_len, REQ_LEN - c->hdr_len, 0);
      if (r == 0) return -1;
      if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
      c->hdr_len += (uint8_t)r;
      if (c->hdr_len < REQ_LEN) continue;
      c->mode = c->hdr[0];
      uint64_t n = 0;
      for (int k = 8; k < 16; k++) n = (n << 8) | c->hdr[k];
      c->remaining = n;
      if (c->mode == M_DOWN) {
        if (pump_out(fd) < 0) return -1;
      } else if (c->mode == M_RR || c->mode == M_RR_CLOSE) {
        if (send(fd, resp, RESP_LEN, MSG_NOSIGNAL) != RESP_LEN) return -1;
        c->done = 1;
        if (c->mode == M_RR_CLOSE) return -1; /* close now: the response is on its way */
      } else if (c->mode == M_UP) {
        if (c->remaining == 0) {
          if (send(fd, "K", 1, MSG_NOSIGNAL) != 1) return -1;
          c->done = 1;
        }
      } else {
        return -1; /* unknown mode */
      }
      continue;
    }
    ssize_t r = recv(fd, bulk_buf, BULK_CHUNK, 0);
    if (r == 0) return -1; /* EOF: the client is done */
    if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    if (c->mode == M_UP && !c->done) {
      c->remaining = (uint64_t)r >= c->remaining ? 0 : c->remaining - (uint64_t)r;
      if (c->remaining == 0) {
        if (send(fd, "K", 1, MSG_NOSIGNAL) != 1) return -1;
        c->done = 1;
      }
    }
    /* Anything else received is discarded. */
  }
  return 0;
}

int main(int argc, char **argv) {
  int naddrs = 8;
  double max_seconds = 3600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--addrs") && i + 1 < argc) naddrs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: sink [--addrs K] [--max-seconds S]\n");
      return 64;
    }
  }
  if (naddrs < 1) naddrs = 1;
  if (naddrs > MAX_ADDRS) naddrs = MAX_ADDRS;

  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  max_fd = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
  conns = calloc((size_t)max_fd, sizeof(struct conn));
  bulk_buf = malloc(BULK_CHUNK);
  if (!conns || !bulk_buf) return 71;
  memset(bulk_buf, 'x', BULK_CHUNK);
  memset(resp, 'r', RESP_LEN);

  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  epfd = epoll_create1(0);
  int lfds[MAX_ADDRS];
  int port = 0;
  for (int attempt = 0; attempt < 20 && port == 0; attempt++) {
    int ok = 1;
    int p = 0;
    for (int a = 0; a < naddrs; a++) {
      int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      int one = 1;
      setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
      sa.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)a);
      if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 4096) < 0) {
        close(s);
        for (int b = 0; b < a; b++) close(lfds[b]);
        ok = 0;
        break;
      }
      if (a == 0) {
        socklen_t len = sizeof sa;
        getsockname(s, (struct sockaddr *)&sa, &len);
        p = ntohs(sa.sin_port);
      }
      lfds[a] = s;
    }
    if (ok) port = p;
  }
  if (port == 0) {
    fprintf(stderr, "sink: cannot bind 127.0.0.1..127.0.0.%d at one port\n", naddrs);
    return 69;
  }
  for (int a = 0; a < naddrs; a++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfds[a]};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfds[a], &ev);
  }
  /* stdin: EOF means the parent is gone. */
  struct epoll_event sev = {.events = EPOLLIN, .data.fd = 0};
  int watch_stdin = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev) == 0;

  printf("sink listening on %d\n", port);
  fflush(stdout);

  double deadline = now_s() + max_seconds;
  struct epoll_event evs[256];
  while (!stop_flag && now_s() < deadline) {
    int n = epoll_wait(epfd, evs, 256, 200);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == 0 && watch_stdin) {
        char b[64];
        ssize_t r = read(0, b, sizeof b);
        if (r <= 0) stop_flag = 1;
        continue;
      }
      int is_listener = 0;
      for (int a = 0; a < naddrs; a++) if (fd == lfds[a]) is_listener = 1;
      if (is_listener) {
        for (int k = 0; k < 256; k++) {
          int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
          if (c < 0) break;
          if (c >= max_fd) {
            close(c);
            continue;
          }
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          memset(&conns[c], 0, sizeof(conns[c]));
          struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(epfd, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      if (evs[i].events & (EPOLLERR)) {
        conn_close(fd);
        continue;
      }
      if (evs[i].events & EPOLLOUT) {
        if (pump_out(fd) < 0) {
          conn_close(fd);
          continue;
        }
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP)) {
        if (on_readable(fd) < 0) conn_close(fd);
      }
    }
  }
  return 0;
}
