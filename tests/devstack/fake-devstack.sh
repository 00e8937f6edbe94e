# shellcheck shell=bash
# The few devstack functions nova-guardrails' plugin calls, for its phase
# tests. Not devstack: simplified stand-ins with devstack's signatures
# (inc/ini-config, inc/python, functions-common).

FAKE_DEVSTACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

function iniget {
    python3 "$FAKE_DEVSTACK_DIR/ini.py" get "$1" "$2" "$3"
}

function iniset {
    python3 "$FAKE_DEVSTACK_DIR/ini.py" set "$1" "$2" "$3" "$4"
}

function inidelete {
    python3 "$FAKE_DEVSTACK_DIR/ini.py" delete "$1" "$2" "$3"
}

function pip_install {
    echo "pip_install $*" >> "$PIP_LOG"
}

function enable_service {
    ENABLED_SERVICES="${ENABLED_SERVICES:+$ENABLED_SERVICES,}$1"
}

function is_service_enabled {
    [[ ",$ENABLED_SERVICES," == *",$1,"* ]]
}

function echo_summary {
    echo "summary: $*"
}
