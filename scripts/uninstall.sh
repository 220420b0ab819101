#!/bin/sh
# Removes what scripts/install.sh installed, from the system or from --root DIR:
# the program, the unit, the PPP/NetworkManager hooks and /etc/default/quietlink
# (unless it holds settings of your own), the documentation and the
# sendmail/mailq/quietlink links (only links that point at quietlink).
#
# Keeps /etc/quietlink unless --purge. Never deletes a spool that holds mail:
# it counts the queue entries (queue/GROUP/, hold/, quarantine/, corrupt/ and
# maildrop/) and the intake journal, says how many remain, and keeps the spool.
# An empty spool is removed with --purge (and then the user quietlink too).
set -eu

PROG=uninstall.sh
say() { printf 'quietlink uninstall: %s\n' "$*"; }
warn() { printf 'quietlink uninstall: warning: %s\n' "$*" >&2; }
die() { printf 'quietlink uninstall: error: %s\n' "$*" >&2; exit 1; }
usage() {
  cat <<EOF
usage: $PROG [--root DIR] [--purge]
  --root DIR   uninstall from DIR instead of /
  --purge      also remove /etc/quietlink, and the spool and the user when no mail is left
EOF
}

ROOT=
PURGE=0
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || { usage >&2; exit 64; }; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
  esac
done
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "$ROOT is not a directory"
  ROOT=$(cd "$ROOT" && pwd -P)
  [ "$ROOT" = / ] && ROOT=
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or give --root DIR"
fi

LIB=$ROOT/usr/lib/quietlink
CONFDIR=$ROOT/etc/quietlink
# the spool the configuration names (absolute paths only), else the default
SPOOL_PATH=/var/spool/quietlink
if [ -f "$CONFDIR/quietlink.yaml" ]; then
  s=$(sed -n 's/^spool:[[:space:]]*["'"'"']\{0,1\}\(\/[^"'"'"' #]*\).*/\1/p' "$CONFDIR/quietlink.yaml" | head -n 1)
  [ -n "$s" ] && SPOOL_PATH=$s
fi
SPOOL=$ROOT$SPOOL_PATH

# ---- stop the daemon
SYSTEMD=0
if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  SYSTEMD=1
  if systemctl cat quietlink.service >/dev/null 2>&1; then
    systemctl disable --now quietlink.service >/dev/null 2>&1 || warn "systemctl disable --now quietlink failed"
    say "stopped and disabled quietlink.service"
  fi
elif [ -z "$ROOT" ] && [ -x "$LIB/bin/quietlink" ] && "$LIB/bin/quietlink" status >/dev/null 2>&1; then
  die "a quietlink daemon is running: stop it first (quietlink keeps running from memory otherwise)"
fi

# ---- links: only ours
is_ours() {
  [ -L "$1" ] || return 1
  case $(readlink "$1") in *quietlink/bin/quietlink) return 0 ;; esac
  return 1
}
for l in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq /usr/bin/quietlink /usr/sbin/quietlink; do
  if is_ours "$ROOT$l"; then
    rm -f "$ROOT$l"
    say "removed $l"
  elif [ -e "$ROOT$l" ] || [ -L "$ROOT$l" ]; then
    case $l in */quietlink) ;; *) say "left $l alone (not quietlink's)" ;; esac
  fi
done

# ---- unit, hooks, documentation, program
for f in /lib/systemd/system/quietlink.service /etc/ppp/ip-up.d/quietlink /etc/ppp/ip-down.d/quietlink \
         /etc/NetworkManager/dispatcher.d/90-quietlink; do
  if [ -e "$ROOT$f" ]; then
    rm -f "$ROOT$f"
    say "removed $f"
  fi
done
# the hooks' settings: removed when they are the ones install.sh wrote (comments
# aside); an administrator's own (QUIETLINK_IFACE, ...) only with --purge, like /etc/quietlink
DEFAULTS=$ROOT/etc/default/quietlink
if [ -f "$DEFAULTS" ] && [ ! -L "$DEFAULTS" ]; then
  settings=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$DEFAULTS" || true)
  if [ "$settings" = "QUIETLINK=/usr/lib/quietlink/bin/quietlink
QUIETLINK_CONFIG=/etc/quietlink/quietlink.yaml" ] || [ "$PURGE" = 1 ]; then
    rm -f "$DEFAULTS"
    say "removed /etc/default/quietlink"
  else
    say "kept /etc/default/quietlink (it holds settings of your own; remove it with --purge)"
  fi
elif [ -L "$DEFAULTS" ]; then
  say "left /etc/default/quietlink alone (a link, not written by install.sh)"
fi
# enablement links left behind when systemctl could not run (--root, no systemd)
for f in "$ROOT"/etc/systemd/system/*.wants/quietlink.service; do
  if [ -L "$f" ]; then
    rm -f "$f"
    say "removed ${f#"$ROOT"}"
  fi
done
if [ "$SYSTEMD" = 1 ]; then systemctl daemon-reload; fi
if [ -d "$ROOT/usr/share/doc/quietlink" ]; then
  rm -rf "$ROOT/usr/share/doc/quietlink"
  say "removed /usr/share/doc/quietlink"
fi
rm -rf "$ROOT/usr/lib/.quietlink.new" "$ROOT/usr/lib/.quietlink.old"
if [ -d "$LIB" ]; then
  rm -rf "$LIB"
  say "removed /usr/lib/quietlink"
fi

# ---- configuration
if [ -d "$CONFDIR" ]; then
  if [ "$PURGE" = 1 ]; then
    rm -rf "$CONFDIR"
    say "removed /etc/quietlink (--purge)"
  else
    say "kept /etc/quietlink (remove it with --purge)"
  fi
fi

# ---- spool: never delete mail
count() { find "$@" -type f ! -name '.*' 2>/dev/null | wc -l | tr -d ' '; }
if [ -d "$SPOOL" ]; then
  messages=$(count "$SPOOL/queue" "$SPOOL/hold" "$SPOOL/quarantine" "$SPOOL/corrupt" "$SPOOL/maildrop")
  journal=$(find "$SPOOL/journal" -type f -name '*.wal' -size +0c 2>/dev/null | wc -l | tr -d ' ')
  bodies=$(count "$SPOOL/data")
  if [ "$messages" -gt 0 ] || [ "$journal" -gt 0 ] || [ "$bodies" -gt 0 ]; then
    word="messages remain"; [ "$messages" = 1 ] && word="message remains"
    say "kept the spool $SPOOL_PATH: $messages $word (queue, hold, quarantine, corrupt, maildrop)"
    [ "$journal" -gt 0 ] && say "  and $journal intake journal segments not yet written into the queue (start quietlink once to write them out)"
    [ "$messages" -eq 0 ] && [ "$bodies" -gt 0 ] && say "  and $bodies message bodies in data/ without a queue entry"
    say "  deliver them (reinstall and run quietlink flush) or move the spool away before deleting it"
  elif [ "$PURGE" = 1 ]; then
    rm -rf "$SPOOL"
    say "removed the empty spool $SPOOL_PATH (--purge)"
  else
    say "kept the spool $SPOOL_PATH (empty; remove it with --purge)"
  fi
fi

# ---- the user: only with --purge and when no spool file of it is left
if [ "$PURGE" = 1 ]; then
  if [ -d "$SPOOL" ]; then
    say "kept the user quietlink (it owns the spool that was kept)"
  elif [ -z "$ROOT" ] && getent passwd quietlink >/dev/null 2>&1; then
    userdel quietlink && say "removed the user quietlink"
  elif [ -n "$ROOT" ] && [ -f "$ROOT/etc/passwd" ] && grep -q '^quietlink:' "$ROOT/etc/passwd"; then
    userdel --root "$ROOT" quietlink && say "removed the user quietlink from $ROOT"
  fi
fi
say "done"
