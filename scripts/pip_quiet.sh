# Sourced by the install scripts: pip_quiet VENV ARGS... runs VENV's pip quietly and keeps its exit status.
#
# Three kinds of lines are dropped because nobody running this project can act on them:
# - "WARNING: Location 'file:///...' is ignored: it is neither a file nor a directory." comes from a machine-wide
#   pip.conf whose local extra indexes hold only some packages;
# - setuptools' "Editable installation." notice (a UserWarning that pip shows for every editable install of a
#   flat-layout project), filtered through PYTHONWARNINGS by its exact summary;
# - "WARNING: mbstrdecoder 1.1.5 does not provide the extra 'all'": a dependency of lm-evaluation-harness asks for an
#   extra that the pinned release no longer declares (the package itself installs; nothing is missing).
# Everything else pip prints (errors, resolver conflicts, yanked releases, other build warnings) still shows.
pip_quiet() {
    local venv=$1 log status=0
    shift
    log=$(mktemp)
    PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
        "$venv/bin/python" -m pip -q --disable-pip-version-check "$@" >"$log" 2>&1 || status=$?
    grep -v -e "^WARNING: Location '.*' is ignored: it is neither a file nor a directory\.$" \
        -e "^WARNING: mbstrdecoder [^ ]* does not provide the extra 'all'$" "$log" >&2 || true
    rm -f "$log"
    return "$status"
}
