# Sourced by the tools that run a pinned package from PyPI in a venv of their own.
#
#   pinned_venv VENV PACKAGE VERSION
#
# Makes VENV hold PACKAGE==VERSION, creating it and installing the package when it does
# not. Callers may run side by side (the end-to-end tests, the two fuzz runs): one
# installs, the others wait for it on a lock beside the venv.
pinned_venv() {
    local venv="$1" package="$2" version="$3" installed
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    installed="$("$venv/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$package" 2>/dev/null || true)"
    if [[ "$installed" != "$version" ]]; then
        echo "$(basename "$0" .sh): installing $package $version into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version" >&2
    fi
    exec 9>&-
}
