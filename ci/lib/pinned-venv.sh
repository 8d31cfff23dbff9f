# Sourced by the ci/ scripts that run a Python tool: `pinned_venv NAME PACKAGE==VERSION` makes
# target/NAME-venv once (a venv, since stock Debian refuses system-wide pip installs) and
# reinstalls only when the pinned version changes; the venv's python is then "$venv/bin/python".
pinned_venv() {
  local name="$1" requirement="$2"
  venv="target/$name-venv"
  if [ "$(cat "$venv/.pinned" 2>/dev/null)" != "$requirement" ]; then
    echo "== installing $requirement into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$requirement"
    echo "$requirement" >"$venv/.pinned"
  fi
}
