# Shared helpers for scripts/demo.sh and scripts/test.sh. Source it; do not run it.
# Everything here is idempotent: it installs only what is missing.

SB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SB_ROOT

# Each step says how long the run has taken so far (minutes:seconds since the first script
# of the run started), so a slow CI run shows where its time went.
: "${SB_T0:=$(date +%s)}"
export SB_T0
say() {
    local t=$(($(date +%s) - SB_T0))
    printf '\033[1;34m==>\033[0m [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Run as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run '$*' and sudo is not installed — run this script as root once"
    fi
}

# Debian packages to build the workspace and the desktop app (Tauri 2 on WebKitGTK 4.1).
SB_BUILD_PACKAGES=(build-essential pkg-config curl wget file libssl-dev libwebkit2gtk-4.1-dev
    libayatana-appindicator3-dev librsvg2-dev libxdo-dev libasound2-dev libopus-dev libpulse-dev)
# Packages the tests need besides the peers (tests/peers/install.sh lists those).
SB_TEST_PACKAGES=(xvfb xauth webkit2gtk-driver xdg-utils libglib2.0-bin)

# apt_install PKG... — installs those that are not installed yet.
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} with your package manager (Debian 12 is what we test on)"
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

check_toolchains() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) and open a new shell"
    command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer"
    command -v npm >/dev/null 2>&1 || die "npm not found: install npm (it comes with Node.js)"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge 20 ] || die "Node.js $major is too old: install Node.js 20 or newer"
}

# npm_ci DIR — installs DIR's npm packages from its lock file when they are missing or stale.
npm_ci() {
    local dir="$1"
    [ -f "$dir/package-lock.json" ] || die "$dir/package-lock.json missing"
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        say "installing npm packages in ${dir#"$SB_ROOT"/}"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# Builds the front end into ui/dist (the desktop binary embeds it at compile time), unless
# ui/dist is newer than every source of it: a new build would make cargo build the desktop
# app again for nothing.
build_ui() {
    npm_ci "$SB_ROOT/ui"
    local ui="$SB_ROOT/ui" built="$SB_ROOT/ui/dist/index.html"
    if [ -f "$built" ] && [ -z "$(find "$ui/src" "$ui/index.html" "$ui/package.json" "$ui/package-lock.json" \
        "$ui/vite.config.ts" "$ui/tsconfig.json" -newer "$built" -print -quit 2>/dev/null)" ]; then
        say "the UI is built already (ui/dist is newer than its sources)"
        return 0
    fi
    say "building the UI"
    (cd "$SB_ROOT/ui" && npm run --silent build)
}

# cargo_target — where cargo puts binaries.
cargo_bin_dir() {
    echo "${CARGO_TARGET_DIR:-$SB_ROOT/target}/debug"
}

# install_cargo_tools — the cargo-installed tools the tests use, when missing: tauri-driver (the
# WebDriver front for the real Tauri window; crates.io, 2.x, not the 3.0 alpha) and cargo-deny
# (licences, bans, sources and advisories of every dependency: deny.toml).
install_cargo_tools() {
    if ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
        say "installing tauri-driver (cargo install, a few minutes)"
        cargo install tauri-driver --locked --version '^2' --quiet
    fi

    if ! command -v cargo-deny >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-deny" ]; then
        say "installing cargo-deny (cargo install, a few minutes)"
        cargo install cargo-deny --locked --version 0.20.2 --quiet
    fi
}
