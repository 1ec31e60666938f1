# Sourced by scripts/*-venv.sh: the steps every separate venv shares, around its own installs.
#
#   venv_begin WHAT DIR PYTHON RECIPE STAMP PROBE SIZE
#       exits 0 ("WHAT up to date: DIR") when STAMP holds exactly RECIPE and DIR/bin/PROBE is
#       executable; otherwise creates DIR with PYTHON -m venv (unless DIR/bin/python exists),
#       keeps it out of git, upgrades its pip and sets the array `pip` (DIR's python -m pip).
#   venv_end WHAT DIR RECIPE STAMP
#       writes RECIPE to STAMP (only after the caller's installs and import check passed).

venv_begin() {
    local what="$1" dir="$2" python="$3" recipe="$4" stamp="$5" probe="$6" size="$7"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && [ -x "$dir/bin/$probe" ]; then
        echo "$what up to date: $dir"
        exit 0
    fi
    echo "==> creating the $what in $dir ($size)"
    if [ ! -x "$dir/bin/python" ]; then
        "$python" -m venv "$dir"
    fi
    # Keep the venv out of git even where .gitignore does not list it.
    echo "*" > "$dir/.gitignore"
    pip=("$dir/bin/python" -m pip --disable-pip-version-check)
    "${pip[@]}" install --quiet --upgrade pip
}

venv_end() {
    local what="$1" dir="$2" recipe="$3" stamp="$4"
    echo "$recipe" > "$stamp"
    echo "$what ready: $dir"
}
