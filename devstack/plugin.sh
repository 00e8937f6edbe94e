#!/bin/bash
# shellcheck shell=bash
# nova-guardrails devstack plugin: devstack sources it as
#   source plugin.sh <mode> [phase]
# with mode stack (phases pre-install, install, post-config, extra),
# unstack or clean.
#
# stack install      pip-installs nova-guardrails into nova's environment
#                    (not editable: the way an operator installs it).
# stack post-config  keeps the configured [DEFAULT] compute_driver as
#                    [guardrails] driver and sets compute_driver to
#                    guardrails.GuardrailsDriver, with [guardrails]
#                    enabled_guards from $NOVA_GUARDRAILS_GUARDS. devstack's
#                    start_nova_compute builds $NOVA_CPU_CONF by copying
#                    $NOVA_CONF, so both files are changed.
# stack extra        reports whether nova-compute wrote its start-up report.
# unstack            nothing to stop (nova-guardrails runs in nova-compute).
# clean              puts the original compute_driver back and removes the
#                    [guardrails] options.

GUARDRAILS_DRIVER=guardrails.GuardrailsDriver

function install_nova_guardrails {
    pip_install "$NOVA_GUARDRAILS_DIR"
}

# configure_nova_guardrails <nova config file>
function configure_nova_guardrails {
    local conf=$1
    local current
    [[ -f $conf ]] || return 0
    current=$(iniget "$conf" DEFAULT compute_driver)
    if [[ -z $current ]]; then
        echo "nova-guardrails: no [DEFAULT] compute_driver in $conf" >&2
        return 1
    fi
    # Idempotent: a second run must not record the wrapper as the real
    # driver.
    if [[ $current != "$GUARDRAILS_DRIVER" ]]; then
        iniset "$conf" guardrails driver "$current"
        iniset "$conf" DEFAULT compute_driver "$GUARDRAILS_DRIVER"
    fi
    iniset "$conf" guardrails enabled_guards "$NOVA_GUARDRAILS_GUARDS"
}

# unconfigure_nova_guardrails <nova config file>
function unconfigure_nova_guardrails {
    local conf=$1
    local original
    [[ -f $conf ]] || return 0
    original=$(iniget "$conf" guardrails driver)
    if [[ -n $original && \
          $(iniget "$conf" DEFAULT compute_driver) == "$GUARDRAILS_DRIVER" ]]
    then
        iniset "$conf" DEFAULT compute_driver "$original"
    fi
    inidelete "$conf" guardrails driver
    inidelete "$conf" guardrails enabled_guards
}

function check_nova_guardrails {
    local state_path report
    state_path=$(iniget "$NOVA_CPU_CONF" DEFAULT state_path)
    report=${state_path:-/var/lib/nova}/guardrails/startup-report.json
    if [[ -f $report ]]; then
        echo "nova-guardrails: start-up report at $report"
    else
        echo "nova-guardrails: no start-up report at $report yet" >&2
    fi
}

if is_service_enabled nova-guardrails; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-guardrails"
        install_nova_guardrails
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-guardrails"
        configure_nova_guardrails "$NOVA_CONF"
        configure_nova_guardrails "$NOVA_CPU_CONF"
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        check_nova_guardrails
    fi

    if [[ "$1" == "unstack" ]]; then
        :
    fi

    if [[ "$1" == "clean" ]]; then
        unconfigure_nova_guardrails "$NOVA_CONF"
        unconfigure_nova_guardrails "$NOVA_CPU_CONF"
    fi
fi
