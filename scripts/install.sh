#!/bin/sh
# Installs quietlink from a built checkout (npm ci && npm run build) or from an
# unpacked npm package with its node_modules, into the system or into --root DIR.
#
#   /usr/lib/quietlink/            dist/, bin/, package.json, production node_modules
#   /usr/bin/quietlink             -> ../lib/quietlink/bin/quietlink
#   /usr/sbin/sendmail, /usr/lib/sendmail, /usr/bin/mailq
#                                  the same program (it looks at the name it was
#                                  called by), unless another MTA owns them
#   /etc/quietlink/quietlink.yaml  production configuration (never overwritten)
#   /var/spool/quietlink/          the spool, user quietlink, mode 0711 (maildrop 1733)
#   group quietlink-admin          may hold, release, quarantine, link up/down, etrn --relay
#   /lib/systemd/system/quietlink.service, /usr/share/doc/quietlink/
#   /etc/ppp/ip-up.d/quietlink, /etc/ppp/ip-down.d/quietlink (and the
#   NetworkManager dispatcher script when NetworkManager is there)
#   /etc/default/quietlink         the hooks' settings (never overwritten): pppd
#                                  and NetworkManager clear the environment
#
# Never contacts a network. Running it again upgrades the program and keeps
# the configuration and the queue. Links are relative, so the installed tree
# works in a chroot and under --root alike.
set -eu
umask 022

PROG=install.sh
say() { printf 'quietlink install: %s\n' "$*"; }
warn() { printf 'quietlink install: warning: %s\n' "$*" >&2; }
die() { printf 'quietlink install: error: %s\n' "$*" >&2; exit 1; }
usage() {
  cat <<EOF
usage: $PROG [--root DIR]
  --root DIR   install into DIR instead of / (an image, a chroot, a test);
               the user is created there only when DIR/etc/passwd exists;
               the hooks read DIR/etc/default/quietlink (else /etc/default/quietlink)
EOF
}

ROOT=
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || { usage >&2; exit 64; }; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 64 ;;
  esac
done
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd -P)
  [ "$ROOT" = / ] && ROOT=
fi
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (sudo $0), or give --root DIR"
fi

# ---- the source: the checkout or unpacked package this script belongs to
SRC=$(cd "$(dirname "$0")/.." && pwd -P)
[ -f "$SRC/package.json" ] && grep -q '"name": *"quietlink"' "$SRC/package.json" || die "$SRC is not a quietlink checkout"
[ -f "$SRC/dist/cli/run.js" ] || die "$SRC/dist is missing: build first (npm ci && npm run build)"
if [ -d "$SRC/src" ] && [ -n "$(find "$SRC/src" -name '*.ts' -newer "$SRC/dist/cli/run.js" 2>/dev/null | head -n 1)" ]; then
  warn "src/ has files newer than dist/: did you run npm run build?"
fi
command -v node >/dev/null 2>&1 || warn "node is not in PATH: quietlink needs Node.js 20 or newer at /usr/bin/node or /usr/local/bin/node"

LIB=$ROOT/usr/lib/quietlink
SPOOL=$ROOT/var/spool/quietlink
CONFDIR=$ROOT/etc/quietlink
CONF=$CONFDIR/quietlink.yaml

# ---- production dependencies, as paths relative to $SRC (node_modules/...), found offline
prod_deps() {
  if command -v npm >/dev/null 2>&1 &&
     out=$(cd "$SRC" && npm_config_update_notifier=false npm ls --omit=dev --all --parseable --offline 2>/dev/null); then
    printf '%s\n' "$out" | while IFS= read -r p; do
      case $p in
        "$SRC") ;;
        "$SRC"/node_modules/*) printf '%s\n' "${p#"$SRC"/}" ;;
        *) echo "quietlink install: error: dependency outside the checkout: $p" >&2; echo '!'; ;;
      esac
    done
    return
  fi
  # no npm (or npm ls failed): follow package.json dependencies the way node resolves them
  node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1], seen = new Set();
    function find(from, name) {
      for (let d = from; d.startsWith(root); d = path.dirname(d)) {
        const p = path.join(d, "node_modules", name);
        if (fs.existsSync(path.join(p, "package.json"))) return p;
        if (d === root) break;
      }
      return null;
    }
    function walk(dir) {
      const pj = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
      const optional = { ...pj.optionalDependencies, ...pj.peerDependencies };
      for (const name of Object.keys({ ...pj.dependencies, ...optional })) {
        const p = find(dir, name);
        if (!p) {
          if (name in optional && !(pj.dependencies && name in pj.dependencies)) continue;
          console.error(`quietlink install: error: ${name} (needed by ${pj.name}) is not in node_modules`);
          console.log("!");
          continue;
        }
        if (seen.has(p)) continue;
        seen.add(p);
        console.log(path.relative(root, p));
        walk(p);
      }
    }
    walk(root);
  ' "$SRC"
}

DEPS=$(prod_deps | LC_ALL=C sort -u)
case $DEPS in *'!'*) die "the production dependencies are incomplete: run npm ci (or npm ci --omit=dev) in $SRC" ;; esac
[ -n "$DEPS" ] || die "no production dependencies found in $SRC/node_modules: run npm ci first"

# ---- the program: staged next to its place, then swapped in
STAGE=$ROOT/usr/lib/.quietlink.new
OLD=$ROOT/usr/lib/.quietlink.old
rm -rf "$STAGE" "$OLD"
mkdir -p "$STAGE/node_modules"
cp -R "$SRC/dist" "$SRC/bin" "$STAGE/"
cp "$SRC/package.json" "$STAGE/"
n=0
# sorted: a package always comes before the packages nested in it, which its copy already holds
printf '%s\n' "$DEPS" | while IFS= read -r rel; do
  [ -e "$STAGE/$rel" ] && continue
  mkdir -p "$(dirname "$STAGE/$rel")"
  cp -RP "$SRC/$rel" "$STAGE/$rel"
done
n=$(printf '%s\n' "$DEPS" | wc -l | tr -d ' ')
chmod -R u+rwX,go+rX,go-w "$STAGE"
chmod 0755 "$STAGE/bin/quietlink"
# the node that runs install.sh, by its absolute path: PHP's clear_env and cron's
# short PATH must not decide whether sendmail finds a node in /usr/local/bin
NODE_BIN=$(command -v node 2>/dev/null || true)
case $NODE_BIN in /*) sed -i "1s|^#!.*|#!$NODE_BIN|" "$STAGE/bin/quietlink" ;; esac
[ "$(id -u)" = 0 ] && chown -R 0:0 "$STAGE"
VERSION=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$SRC/package.json" | head -n 1)
if [ -d "$LIB" ]; then
  mv "$LIB" "$OLD"
  mv "$STAGE" "$LIB"
  rm -rf "$OLD"
  say "upgraded /usr/lib/quietlink to $VERSION (dist/, bin/, package.json, $n production packages)"
else
  mv "$STAGE" "$LIB"
  say "installed /usr/lib/quietlink $VERSION (dist/, bin/, package.json, $n production packages)"
fi

# ---- the system user
OWNER=
if [ -z "$ROOT" ]; then
  if getent passwd quietlink >/dev/null 2>&1; then
    say "user quietlink exists"
  else
    useradd --system --user-group --home-dir /var/spool/quietlink --no-create-home \
      --shell /usr/sbin/nologin --comment 'quietlink mail gateway' quietlink
    say "created system user quietlink"
  fi
  OWNER=$(id -u quietlink):$(id -g quietlink)
  if getent group quietlink-admin >/dev/null 2>&1; then
    say "group quietlink-admin exists"
  else
    groupadd --system quietlink-admin
    say "created group quietlink-admin (members may change the queue and the link)"
  fi
elif [ -f "$ROOT/etc/passwd" ]; then
  if grep -q '^quietlink:' "$ROOT/etc/passwd"; then
    say "user quietlink exists in $ROOT"
  else
    useradd --root "$ROOT" --system --user-group --home-dir /var/spool/quietlink --no-create-home \
      --shell /usr/sbin/nologin --comment 'quietlink mail gateway' quietlink
    say "created system user quietlink in $ROOT"
  fi
  OWNER=$(awk -F: '$1 == "quietlink" { print $3 ":" $4 }' "$ROOT/etc/passwd")
  if [ -f "$ROOT/etc/group" ] && ! grep -q '^quietlink-admin:' "$ROOT/etc/group"; then
    groupadd --root "$ROOT" --system quietlink-admin
    say "created group quietlink-admin in $ROOT"
  fi
else
  say "skipped creating the user quietlink: $ROOT/etc/passwd does not exist (create it in the target system, then chown quietlink: /var/spool/quietlink /var/spool/quietlink/maildrop)"
fi

# ---- the configuration: a production version of etc/quietlink.yaml, never overwritten
mkdir -p "$CONFDIR"
chmod 0755 "$CONFDIR"
if [ -e "$CONF" ]; then
  say "kept /etc/quietlink/quietlink.yaml (an existing configuration is never overwritten)"
else
  # the example runs unprivileged on loopback; the production one differs in its
  # header, hostname (this machine's name), spool and listen addresses
  awk '
    BEGIN { head = 1 }
    head && /^#/ { next }
    head {
      head = 0
      print "# quietlink configuration (written by scripts/install.sh; it is never overwritten)."
      print "# Every key: SPEC section 12 and appliance.md. Check a change with"
      print "#   quietlink check-config"
      print "# and apply it with: systemctl reload quietlink"
    }
    /^hostname:/ { print "# hostname: gw.office.example      # EHLO name; default: this machine'"'"'s name"; next }
    /^spool:/ { print "spool: /var/spool/quietlink"; spool = 1; next }
    /^lanNetworks:/ && !/#/ { print $0 "            # add the LAN, e.g. [127.0.0.0/8, 192.168.1.0/24]"; next }
    /^  mynetworks:/ && !/#/ { print $0 "   # add the LAN, e.g. 192.168.1.0/24"; next }
    /^  listen:/ && !listen {   # smtp.listen (the first one; metrics.listen stays)
      print "  listen:"
      print "    - \"127.0.0.1:25\""
      print "    # - \"192.168.1.1:25\"            # the LAN address the office clients use"
      listen = 1
      next
    }
    { print }
    END { if (!spool || !listen) exit 1 }
  ' "$SRC/etc/quietlink.yaml" >"$CONF.new" || { rm -f "$CONF.new"; die "could not derive the production configuration from etc/quietlink.yaml"; }
  chmod 0644 "$CONF.new"   # the sendmail command, run by any user, reads it
  mv "$CONF.new" "$CONF"
  say "wrote /etc/quietlink/quietlink.yaml (spool /var/spool/quietlink, listen 127.0.0.1:25)"
fi
if command -v node >/dev/null 2>&1; then
  if out=$("$LIB/bin/quietlink" check-config -c "$CONF" 2>&1); then
    say "checked /etc/quietlink/quietlink.yaml: configuration OK"
  else
    warn "/etc/quietlink/quietlink.yaml has problems (quietlink will not start until they are fixed):"
    printf '%s\n' "$out" >&2
  fi
fi

# ---- the spool
mkdir -p "$SPOOL/maildrop"
# the spool: everyone may pass through (to maildrop and the control socket), no one else list it;
# maildrop: every local user may drop a message, nobody may list, read or remove another's (sticky)
chmod 0711 "$SPOOL"
chmod 1733 "$SPOOL/maildrop"
if [ -n "$OWNER" ]; then
  chown "$OWNER" "$SPOOL" "$SPOOL/maildrop"
  chmod 0711 "$SPOOL"
  chmod 1733 "$SPOOL/maildrop"
  say "spool /var/spool/quietlink: owner quietlink, mode 0711 (maildrop 1733)"
else
  say "spool /var/spool/quietlink: mode 0711 (maildrop 1733), owner unchanged (no user quietlink)"
fi

# ---- documentation (the unit's Documentation=)
mkdir -p "$ROOT/usr/share/doc/quietlink"
for f in README.md appliance.md; do
  if [ -f "$SRC/$f" ]; then install -m 0644 "$SRC/$f" "$ROOT/usr/share/doc/quietlink/$f"; fi
done
say "installed /usr/share/doc/quietlink (README.md, appliance.md)"

# ---- systemd unit
mkdir -p "$ROOT/lib/systemd/system"
install -m 0644 "$SRC/etc/quietlink.service" "$ROOT/lib/systemd/system/quietlink.service"
say "installed /lib/systemd/system/quietlink.service"

# ---- link hooks and their settings
# pppd and NetworkManager run hooks with a cleared environment, so the hooks
# read /etc/default/quietlink, named on a line of their own. With --root that
# line names DIR/etc/default/quietlink (a hook that cannot read it falls back
# to /etc/default/quietlink, so a booted image works too); the file itself
# names the installed system's paths, as the unit and the configuration do.
DEFAULTS=$ROOT/etc/default/quietlink
# DEFAULTS as a single-quoted shell word, escaped for a sed replacement
quoted=$(printf '%s' "$DEFAULTS" | sed "s/'/'\\\\''/g")
sed_value=$(printf "'%s'" "$quoted" | sed 's/[\\|&]/\\&/g')
install_hook() { # install_hook FILE-UNDER-scripts/ /etc/PATH
  mkdir -p "$(dirname "$ROOT$2")"
  if [ -n "$ROOT" ]; then
    sed "s|^QUIETLINK_DEFAULTS=.*|QUIETLINK_DEFAULTS=$sed_value|" "$SRC/scripts/$1" >"$ROOT$2.new"
  else
    cp "$SRC/scripts/$1" "$ROOT$2.new"
  fi
  chmod 0755 "$ROOT$2.new"
  mv "$ROOT$2.new" "$ROOT$2"
  say "installed $2"
}
install_hook ip-up.d/quietlink /etc/ppp/ip-up.d/quietlink
install_hook ip-down.d/quietlink /etc/ppp/ip-down.d/quietlink
if [ -d "$ROOT/etc/NetworkManager/dispatcher.d" ]; then
  install_hook NetworkManager/90-quietlink /etc/NetworkManager/dispatcher.d/90-quietlink
fi
if [ -e "$DEFAULTS" ] || [ -L "$DEFAULTS" ]; then
  say "kept /etc/default/quietlink (it is never overwritten)"
else
  mkdir -p "$ROOT/etc/default"
  cat >"$DEFAULTS.new" <<'EOF'
# quietlink's settings for its PPP hooks (/etc/ppp/ip-up.d/quietlink,
# /etc/ppp/ip-down.d/quietlink) and its NetworkManager dispatcher script,
# which pppd and NetworkManager run with a cleared environment. Shell syntax;
# written by scripts/install.sh when missing and never overwritten.
# A variable set in a hook's environment wins over this file.
QUIETLINK=/usr/lib/quietlink/bin/quietlink
QUIETLINK_CONFIG=/etc/quietlink/quietlink.yaml
# The WAN interface. When set, the hooks ignore every other interface (wlan0,
# docker0, a second modem). When not set, the PPP hooks report every pppd
# link, and the NetworkManager script reports "up" only for an interface that
# carries the default route and "down" only when no default route is left.
#QUIETLINK_IFACE=ppp0
EOF
  chmod 0644 "$DEFAULTS.new"
  mv "$DEFAULTS.new" "$DEFAULTS"
  say "wrote /etc/default/quietlink (QUIETLINK, QUIETLINK_CONFIG; QUIETLINK_IFACE commented out)"
fi

# ---- command links: relative targets; only where no other MTA is
is_ours() { # a link into some quietlink installation (this one, /opt/quietlink, npm -g)
  [ -L "$1" ] || return 1
  case $(readlink "$1") in *quietlink/bin/quietlink) return 0 ;; esac
  return 1
}
FOREIGN=0
place_link() { # place_link /usr/sbin/sendmail ../lib/quietlink/bin/quietlink
  full=$ROOT$1
  if is_ours "$full"; then
    if [ "$(readlink "$full")" = "$2" ]; then
      say "kept $1 -> $2"
    else
      ln -sfn "$2" "$full"
      say "updated $1 -> $2"
    fi
  elif [ -L "$full" ]; then
    warn "$1 -> $(readlink "$full") belongs to another MTA: left alone"
    FOREIGN=1
  elif [ -e "$full" ]; then
    warn "$1 exists and is not quietlink's (another MTA?): left alone"
    FOREIGN=1
  else
    mkdir -p "$(dirname "$full")"
    ln -s "$2" "$full"
    say "linked $1 -> $2"
  fi
}
place_link /usr/bin/quietlink ../lib/quietlink/bin/quietlink
place_link /usr/sbin/sendmail ../lib/quietlink/bin/quietlink
place_link /usr/lib/sendmail quietlink/bin/quietlink
place_link /usr/bin/mailq ../lib/quietlink/bin/quietlink
[ "$FOREIGN" = 0 ] || warn "remove the other MTA's package first if quietlink should answer to sendmail and mailq (quietlink sendmail / quietlink mailq work in any case)"

# ---- a running system: let systemd see the unit; a running daemon gets the new program
if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  if systemctl is-active --quiet quietlink; then
    systemctl restart quietlink
    say "restarted quietlink (it runs the new program)"
  else
    say "next: edit /etc/quietlink/quietlink.yaml, then systemctl enable --now quietlink"
  fi
fi
say "users whose programs call sendmail (www-data, ...) need group quietlink: usermod -aG quietlink www-data"
say "done"
