"""Exit codes of alkomd and alkomctl: the sysexits.h names, and what each one means here."""

from __future__ import annotations

EX_OK = 0  # all is well
EX_PROBLEM = 1  # the command ran and found a problem: a thief on a port, no valid sentence, not a known modem, no such call
EX_BEHIND_ANCHOR = 3  # the audit record is behind its anchor: its last entries removed, or an older copy of the database
EX_USAGE = 2  # a bad command line (argparse's own code, so a script sees one code for every usage error; not sysexits' 64)
EX_DATAERR = 65  # the data is wrong: a broken audit chain, a backup copy that fails its checks
EX_NOINPUT = 66  # no such port, file or database
EX_UNAVAILABLE = 69  # no daemon answers, a port failed, the broker or a device cannot be reached, nobody opened the pty
EX_SOFTWARE = 70  # internal error: a bug (the log has the traceback)
EX_CANTCREAT = 73  # an output file cannot be created (or exists, without --force)
EX_IOERR = 74  # the database cannot be opened or written
EX_TEMPFAIL = 75  # try again: the port is busy (another program holds it), the daemon took its MQTT session back
EX_PROTOCOL = 76  # the daemon's reply is not understood (alkomctl older than the daemon?)
EX_NOPERM = 77  # permission denied: a port, the control socket, a secret, the broker's login or ACL
EX_CONFIG = 78  # configuration error (one line names the file and the key); systemd does not restart the daemon
EX_INTERRUPTED = 130  # stopped by Ctrl-C before it finished (the shell's 128 + SIGINT)
