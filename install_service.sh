#!/usr/bin/env bash
# Installs callbridge as the systemd service openai-inbound-calls.service.
#
#   sudo ./install_service.sh                  install or upgrade (idempotent), then offer to edit
#   sudo ./install_service.sh --edit           also open the configuration in $EDITOR now
#   sudo ./install_service.sh --non-interactive  never ask anything
#   sudo ./install_service.sh --root DIR       install into a staging root (packaging, tests)
#   sudo ./install_service.sh --uninstall      remove the service and the program (the
#                                              configuration and the user stay)
#
# What it does: creates the system user and group "callbridge" and the operators' group
# "callbridge-operators" (moving members of "callbridge" into it: an upgrade); installs callbridge into
# its own virtual environment under /opt/callbridge/venv; creates
# /etc/callbridge/callbridge.env from .env.example only if it does not exist (mode 0640,
# root:callbridge; an existing file is never overwritten) and the operators'
# /etc/callbridge/operators.env (0640, root:callbridge-operators: no secrets); installs the unit, reloads
# systemd and enables the service (skipped, with a message, where systemd is not running);
# migrates the call history (callbridge db upgrade, as the service user with the env file;
# in a staging root it prints the command to run on the target instead).
set -euo pipefail

SERVICE=openai-inbound-calls
APP_USER=callbridge
OPS_GROUP=callbridge-operators  # who may run status, hangup and read the history (docs/operations.md)
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/
EDIT=no
INTERACTIVE=auto
ACTION=install
PYTHON=${PYTHON:-python3}
SEED_ENV=/usr/local/asterisk/.env  # the replaced script's configuration: same variable names

if [ -t 1 ]; then
  GREEN=$'\033[32m' YELLOW=$'\033[33m' RED=$'\033[31m' BOLD=$'\033[1m' RESET=$'\033[0m'
else
  GREEN="" YELLOW="" RED="" BOLD="" RESET=""
fi
ok() { printf '%s✓%s %s\n' "$GREEN" "$RESET" "$*"; }
note() { printf '%s!%s %s\n' "$YELLOW" "$RESET" "$*"; }
fail() { printf '%s✗ %s%s\n' "$RED" "$*" "$RESET" >&2; exit 1; }

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --edit) EDIT=yes ;;
    --non-interactive) INTERACTIVE=no ;;
    --root) [ $# -ge 2 ] || fail "--root needs a directory"; ROOT=$2; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --uninstall) ACTION=uninstall ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; fail "unknown option: $1" ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || fail "run it as root (sudo $0)"
[ -d "$ROOT" ] || fail "--root $ROOT is not a directory"
ROOT=$(cd "$ROOT" && pwd)
if [ "$INTERACTIVE" = auto ]; then
  if [ -t 0 ] && [ -t 1 ]; then INTERACTIVE=yes; else INTERACTIVE=no; fi
fi

path() { printf '%s%s' "${ROOT%/}" "$1"; }  # a system path inside the target root
PREFIX=$(path /opt/callbridge)
ENV_DIR=$(path /etc/callbridge)
ENV_FILE=$ENV_DIR/callbridge.env
OPS_ENV_FILE=$ENV_DIR/operators.env
UNIT_FILE=$(path /etc/systemd/system/$SERVICE.service)
TEMPLATE_FILE=$(path "/etc/systemd/system/$SERVICE@.service")  # several instances on one host
systemd_live() { [ "$ROOT" = / ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# --- the user and group -----------------------------------------------------------------

group_id() { awk -F: -v n="${1:-$APP_USER}" '$1 == n { print $3 }' "$(path /etc/group)" 2>/dev/null; }
group_members() { awk -F: -v n="$1" '$1 == n { print $4 }' "$(path /etc/group)" 2>/dev/null | tr ',' ' '; }
user_id() { awk -F: -v n="$APP_USER" '$1 == n { print $3 }' "$(path /etc/passwd)" 2>/dev/null; }

free_system_id() {  # the highest id below 1000 that neither file uses
  local id
  for id in $(seq 999 -1 100); do
    if ! awk -F: -v id="$id" '$3 == id { found = 1 } END { exit !found }' \
        "$(path /etc/passwd)" "$(path /etc/group)" 2>/dev/null; then
      echo "$id"; return
    fi
  done
  fail "no free system id below 1000 in $(path /etc/passwd)"
}

ensure_user() {
  if [ -n "$(user_id)" ]; then ok "user $APP_USER exists"; return; fi
  if [ "$ROOT" = / ]; then
    getent group "$APP_USER" >/dev/null || groupadd --system "$APP_USER"
    useradd --system --gid "$APP_USER" --home-dir /var/lib/callbridge --no-create-home \
      --shell /usr/sbin/nologin --comment "callbridge voice agent" "$APP_USER"
  else
    # A staging root: write the entries directly (useradd --root needs a full system there).
    mkdir -p "$(path /etc)"
    touch "$(path /etc/passwd)" "$(path /etc/group)"
    local gid uid
    gid=$(group_id)
    if [ -z "$gid" ]; then
      gid=$(free_system_id)
      echo "$APP_USER:x:$gid:" >> "$(path /etc/group)"
    fi
    uid=$(free_system_id)
    echo "$APP_USER:x:$uid:$gid:callbridge voice agent:/var/lib/callbridge:/usr/sbin/nologin" >> "$(path /etc/passwd)"
  fi
  ok "created system user $APP_USER"
}

# The operators: a group of their own, not the service's. Members of the service's group
# could read the env file (the OpenAI key, the ARI, SMTP and database passwords,
# RECORDS_HASH_KEY) and write the history; members of the operators' group can run status
# and hangup and read the history, and nothing else. Operators added the old way
# (`usermod -aG callbridge NAME`) are moved: that was the documented way until now.
ensure_operators_group() {
  if [ -z "$(group_id "$OPS_GROUP")" ]; then
    if [ "$ROOT" = / ]; then
      groupadd --system "$OPS_GROUP"
    else
      echo "$OPS_GROUP:x:$(free_system_id):" >> "$(path /etc/group)"
    fi
    ok "created the operators' group $OPS_GROUP"
  fi
  local name moved=""
  for name in $(group_members "$APP_USER"); do
    [ "$name" = "$APP_USER" ] && continue
    if [ "$ROOT" = / ]; then
      usermod -aG "$OPS_GROUP" "$name" && gpasswd -d "$name" "$APP_USER" >/dev/null
    else
      local groups
      groups=$(path /etc/group)
      awk -F: -v OFS=: -v app="$APP_USER" -v ops="$OPS_GROUP" -v name="$name" '
        $1 == app { n = split($4, m, ","); $4 = ""; for (i = 1; i <= n; i++) if (m[i] != name && m[i] != "") $4 = $4 ($4 == "" ? "" : ",") m[i] }
        $1 == ops { $4 = ($4 == "" ? name : $4 "," name) }
        { print }' "$groups" > "$groups.new" && mv "$groups.new" "$groups"
    fi
    moved="$moved $name"
  done
  if [ -n "$moved" ]; then
    note "moved operators from the group $APP_USER to $OPS_GROUP:$moved (they may no longer read the secrets; a new login takes the change)"
  fi
}

# --- install ----------------------------------------------------------------------------

install_program() {
  command -v "$PYTHON" >/dev/null || fail "$PYTHON not found: install Python 3.11 or newer"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "$PYTHON is $("$PYTHON" -V 2>&1); callbridge needs Python 3.11 or newer"
  mkdir -p "$PREFIX/share"
  if [ ! -x "$PREFIX/venv/bin/python" ]; then
    "$PYTHON" -m venv "$PREFIX/venv" || fail "could not create $PREFIX/venv (is python3-venv installed?)"
  fi
  "$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null \
    || note "could not upgrade pip; going on with the one there is"
  "$PREFIX/venv/bin/python" -m pip install --quiet --upgrade "$SRC_DIR" \
    || fail "pip could not install callbridge from $SRC_DIR"
  cp "$SRC_DIR/README.md" "$PREFIX/share/README.md"
  [ -f "$SRC_DIR/docs/operations.md" ] && cp "$SRC_DIR/docs/operations.md" "$PREFIX/share/operations.md"
  ok "callbridge $("$PREFIX/venv/bin/callbridge" --version | awk '{print $2}') installed in $PREFIX/venv"
}

install_env_file() {
  local gid
  gid=$(group_id)
  mkdir -p "$ENV_DIR"
  # The service and the operators enter it (both are in the operators' group); others
  # do not (agents.toml and other files an admin puts here stay private). Within it, each
  # file says who reads it: callbridge.env the service alone, operators.env the operators.
  chown "0:$(group_id "$OPS_GROUP")" "$ENV_DIR"
  chmod 0750 "$ENV_DIR"
  if [ -e "$ENV_FILE" ]; then
    ok "kept the existing configuration $ENV_FILE"
  elif [ "$ROOT" = / ] && [ -f "$SEED_ENV" ]; then
    cp "$SEED_ENV" "$ENV_FILE"
    note "copied the old script's configuration $SEED_ENV to $ENV_FILE (the variable names are the same)"
  else
    cp "$SRC_DIR/.env.example" "$ENV_FILE"
    note "created $ENV_FILE from .env.example: fill in ASTERISK_USERNAME, ASTERISK_PASSWORD, OPENAI_API_KEY"
  fi
  chown "0:$gid" "$ENV_FILE"
  chmod 0640 "$ENV_FILE"
  if [ ! -e "$OPS_ENV_FILE" ]; then
    cat > "$OPS_ENV_FILE" <<'OPS'
# callbridge for its operators (group callbridge-operators): what `callbridge status`,
# `hangup` and `calls` need, and no secret. The service reads callbridge.env, not this.
# STATE_DIR=/var/lib/callbridge
# CONTROL_SOCKET_PATH=/run/callbridge/control.sock
# INSTANCE_ID=
# RECORDS_TIMEZONE=
# With MariaDB, MySQL or PostgreSQL: a credential that may only read (GRANT SELECT), not
# the service's (docs/operations.md, "Operators").
# DATABASE_URL=postgresql+psycopg://callbridge_read:PASSWORD@HOST/callbridge
OPS
    ok "created $OPS_ENV_FILE for the operators (no secrets in it)"
  fi
  chown "0:$(group_id "$OPS_GROUP")" "$OPS_ENV_FILE"
  chmod 0640 "$OPS_ENV_FILE"
}

install_unit() {
  mkdir -p "$(dirname "$UNIT_FILE")"
  install -m 0644 "$SRC_DIR/$SERVICE.service" "$UNIT_FILE"
  install -m 0644 "$SRC_DIR/$SERVICE@.service" "$TEMPLATE_FILE"
  ok "installed $UNIT_FILE and $TEMPLATE_FILE (for further instances, see docs/operations.md)"
  if systemd_live; then
    systemctl daemon-reload
    systemctl enable "$SERVICE.service" >/dev/null 2>&1 || fail "systemctl enable $SERVICE failed"
    ok "enabled $SERVICE (start it with: systemctl start $SERVICE)"
  else
    note "systemd is not running here (or --root was given): skipped daemon-reload and enable"
  fi
}

# The command that migrates the call history, as the service would open it: its user, its
# env file (DATABASE_URL, STATE_DIR). Paths are the target's, so a staging root prints it.
MIGRATE=(runuser -u "$APP_USER" -- /opt/callbridge/venv/bin/callbridge db upgrade --env-file /etc/callbridge/callbridge.env)

migrate_history() {
  if [ "$ROOT" != / ]; then
    note "staging root: skipped migrating the call history; on the target run: ${MIGRATE[*]}"
    return
  fi
  # Where the embedded SQLite history lives by default; the unit's StateDirectory= makes
  # the same directory (mode 2750, as here), but the service may not have started yet.
  # The operators' group's, readable and never writable by it (records/store.py); files
  # an earlier version made group-writable for the group callbridge lose that.
  install -d -m 2750 -o "$APP_USER" -g "$OPS_GROUP" /var/lib/callbridge
  chgrp -R "$OPS_GROUP" /var/lib/callbridge
  chmod -R g-w,o-rwx /var/lib/callbridge
  local output
  if output=$("${MIGRATE[@]}" 2>&1); then
    ok "$output"
  else
    # Not fatal: a server database may not exist yet on a first install. The service's
    # records wait in the spool until the tables are there.
    note "could not migrate the call history (run it again when the database is ready: ${MIGRATE[*]}): $output"
  fi
}

edit_env_file() {
  local editor=${EDITOR:-}
  if [ -z "$editor" ]; then
    for candidate in nano vi; do
      if command -v "$candidate" >/dev/null; then editor=$candidate; break; fi
    done
  fi
  [ -n "$editor" ] || fail "no editor found: set EDITOR, or edit $ENV_FILE by hand"
  "$editor" "$ENV_FILE"
}

do_install() {
  printf '%sInstalling callbridge (%s.service) into %s%s\n' "$BOLD" "$SERVICE" "$ROOT" "$RESET"
  ensure_user
  ensure_operators_group
  install_program
  install_env_file
  install_unit
  if [ "$EDIT" = yes ]; then
    edit_env_file
  elif [ "$INTERACTIVE" = yes ]; then
    read -r -p "Edit $ENV_FILE now? [y/N] " answer
    case "$answer" in [yY]*) edit_env_file ;; esac
  fi
  migrate_history  # after editing: DATABASE_URL may just have been set
  if [ "$ROOT" = / ]; then
    if "$PREFIX/venv/bin/callbridge" config --env-file "$ENV_FILE" >/dev/null 2>&1; then
      ok "configuration is valid; run: sudo -u $APP_USER $PREFIX/venv/bin/callbridge check --env-file $ENV_FILE"
    else
      note "configuration is not complete yet: $PREFIX/venv/bin/callbridge config --env-file $ENV_FILE says why"
    fi
  fi
  ok "done"
}

do_uninstall() {
  printf '%sUninstalling callbridge (%s.service) from %s%s\n' "$BOLD" "$SERVICE" "$ROOT" "$RESET"
  if systemd_live; then
    systemctl disable --now "$SERVICE.service" >/dev/null 2>&1 || true
    systemctl stop "$SERVICE@*.service" >/dev/null 2>&1 || true
  fi
  rm -f "$UNIT_FILE" "$TEMPLATE_FILE"
  systemd_live && systemctl daemon-reload
  rm -rf "$PREFIX"
  ok "removed the service and $PREFIX"
  note "kept $ENV_FILE and the user $APP_USER (remove them by hand if you want them gone)"
}

case "$ACTION" in
  install) do_install ;;
  uninstall) do_uninstall ;;
esac
