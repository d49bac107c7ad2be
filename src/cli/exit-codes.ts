/**
 * Process exit codes (sysexits.h), which systemd shows by name.
 * @packageDocumentation
 */
export const ExitCode = Object.freeze({
  /** Clean exit (also after a graceful SIGTERM/SIGINT). */
  OK: 0,
  /** Something failed at run time (e.g. a plugin's start() failed). A listener that cannot bind is {@link ExitCode.UNAVAILABLE}. */
  SOFTWARE: 70,
  /** EX_USAGE: bad command-line flags. */
  USAGE: 64,
  /** EX_CONFIG: the configuration is invalid or cannot be loaded. */
  CONFIG: 78,
  /** EX_UNAVAILABLE: a listener address is in use or not available. */
  UNAVAILABLE: 69,
});
