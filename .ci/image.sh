#!/usr/bin/env bash
# Builds the container image (Containerfile) and smoke-tests it by running the
# README quick start inside it.
#
#   .ci/image.sh [BINARY]      BINARY: the smelt to put in the image, default target/release/smelt
#   .ci/image.sh --base-only   steps 1 to 3 only (.ci/run makes the base while the workspace builds)
#
# .ci/run passes target/debug/smelt, the binary it has built already (a release
# build would add many minutes of compiling to CI); the image users run is built
# from the release binary (docs/slurm.md, "Container image"). No container
# registry is reachable here, so the base image is made from Debian's packages:
#
#   1. apt-get install debootstrap, podman and runc when missing (podman builds
#      with buildah's code; no daemon);
#   2. debootstrap --variant=minbase bookworm into target/image-rootfs (what
#      debian:bookworm-slim is made from), skipped when it is there already;
#   3. import it as localhost/debian-slim-base:bookworm (skipped when present);
#   4. podman build -f Containerfile (BASE is that image; SMELT_BIN the binary);
#   5. smoke test: `smelt run examples/quickstart.yaml` twice in the image, as the
#      image's user in its WORKDIR, with no network: both versions must be
#      committed with the digest of the same run outside the image;
#   6. the image runs what `--executor k8s` writes: manifests for 2 ranks with
#      the data directory at /data, then each Job's container command (rank 0,
#      rank 1, the commit) separately with only /data shared: the version they
#      commit has the digest of a plain run.
#   Steps 5 and 6 use `podman run` when a container starts on this machine,
#   else (a VM without the cgroup or namespace support a runtime needs) the
#   image's root file system with chroot: a container's writable mount
#   (`podman mount`), /proc and /dev bound in, `chroot --userspec` the image's user.
#
# Podman's storage is target/image-storage (overlay, or vfs where overlay cannot
# be mounted), so nothing outside target/ is changed except the packages of step 1.
# Environment: SMELT_IMAGE_TAG (default localhost/smelt:ci), SMELT_IMAGE_SMOKE
# (auto, podman or chroot: auto tries podman run and falls back to chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
base_only=false
if [ "${1:-}" = "--base-only" ]; then base_only=true; shift; fi
bin=${1:-target/release/smelt}
tag=${SMELT_IMAGE_TAG:-localhost/smelt:ci}
base=localhost/debian-slim-base:bookworm
rootfs=target/image-rootfs
mode=${SMELT_IMAGE_SMOKE:-auto}
mirror=http://deb.debian.org/debian
say() { echo "== image.sh ($((SECONDS - start))s): $*"; }
die() { echo "image.sh: FAILED: $*" >&2; exit 1; }

$base_only || [ -x "$bin" ] || die "no smelt binary at $bin (build it first: cargo build --release)"

# 1. Tools.
# runc, not crun (podman's default): crun refuses cgroup v1/v2 hybrid hosts
# ("cgroups in hybrid mode not supported"), runc runs on both.
if ! command -v debootstrap >/dev/null || ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    say "installing debootstrap, podman and runc"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap podman runc >/dev/null
fi

# Podman as root on a machine without systemd or a container engine: runc,
# cgroupfs, events to a file, storage under target/. Overlay needs the kernel's overlayfs
# on the storage's file system; vfs (full copies per layer) works everywhere.
mkdir -p target/image-storage target/image-run
driver_file=target/image-storage/driver
if [ ! -f "$driver_file" ]; then
    probe=$(mktemp -d target/image-run/overlay-probe.XXXX)
    mkdir -p "$probe"/{l,u,w,m}
    if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
        umount "$probe/m"
        echo overlay >"$driver_file"
    else
        echo vfs >"$driver_file"
    fi
    rm -rf "$probe"
fi
driver=$(cat "$driver_file")
pm() {
    podman --root "$PWD/target/image-storage/$driver" --runroot "$PWD/target/image-run" --storage-driver "$driver" \
        --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"
}
say "podman $(podman --version | awk '{print $3}'), storage driver $driver"

# 2. The base root file system, from Debian's packages (cached in target/).
if [ ! -f "$rootfs.done" ]; then
    say "debootstrap --variant=minbase bookworm $rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >target/image-debootstrap.log 2>&1 \
        || { tail -30 target/image-debootstrap.log; die "debootstrap failed (log: target/image-debootstrap.log)"; }
    # The sources of debian:bookworm-slim: the release, its updates and security.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    touch "$rootfs.done"
fi

# 3. Import it, slimmed as debian:bookworm-slim is: no documentation but the
# copyright files, no manuals or translations (dpkg.cfg.d/slim keeps it so for
# packages installed later), no package lists or cache; no device nodes.
if ! pm image exists "$base"; then
    say "importing $rootfs as $base"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<EOF
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$rootfs/usr/share/locale" -mindepth 1 ! -type d ! -name locale.alias -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/* \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' --exclude='./tmp/*' \
        -c . \
        | pm import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
fi

if $base_only; then
    say "base image $base is ready"
    exit 0
fi

# 4. Build. The binary is hard-linked (or copied) to target/image-bin/smelt,
# inside the build context (.containerignore lets only it and the other
# binaries of target/ through). RUN steps use chroot isolation (no container
# runtime needed to build); the base is never pulled.
mkdir -p target/image-bin
ln -f "$bin" target/image-bin/smelt 2>/dev/null || cp -f "$bin" target/image-bin/smelt
say "building $tag from $bin"
pm build --pull=never --isolation chroot -f Containerfile \
    --build-arg BASE="$base" --build-arg SMELT_BIN=target/image-bin/smelt -t "$tag" . >target/image-build.log 2>&1 \
    || { tail -40 target/image-build.log; die "podman build failed (log: target/image-build.log)"; }
pm image prune -f >/dev/null  # the images this tag named before
say "built $tag: $(pm image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"

# Smoke tests. The quick start outside the image first, with the same binary
# and the same relative pipeline path (rows keep their input paths, so the
# digest depends on them).
tmp=$(mktemp -d)
cleanup() {
    if [ -n "${mnt:-}" ]; then
        umount "$mnt/data" 2>/dev/null || true
        umount "$mnt/proc" 2>/dev/null || true
        umount "$mnt/dev" 2>/dev/null || true
    fi
    if [ -n "${ctr:-}" ]; then
        pm umount "$ctr" >/dev/null 2>&1 || true
        pm rm -f "$ctr" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
"$bin" --data-dir "$tmp/outside" run examples/quickstart.yaml --no-progress >"$tmp/outside.log" 2>&1 \
    || { cat "$tmp/outside.log"; die "the quick start failed outside the image"; }
digest_of() { sed -n 's/^  "digest": "\(.*\)",$/\1/p' "$1"; }
"$bin" --data-dir "$tmp/outside" catalog show quickstart@1 --format json >"$tmp/outside.json"
want=$(digest_of "$tmp/outside.json")
[ -n "$want" ] || die "no digest in the outside run's catalog show"

# in_image DATA_DIR SCRIPT [NAME=VALUE...]: runs SCRIPT with /bin/sh in the
# image, as its user, in its WORKDIR, without network, with the host directory
# DATA_DIR at /data (as a Kubernetes volume would be) and the variables given.
# podman run when a container starts here; else chroot into the root file
# system of a container (`podman mount`: its writable layer), /proc and /dev
# bound in, the user and directory read from the image's config.
used=
if [ "$mode" != chroot ]; then
    # Podman's default rlimits (1048576 open files, more processes than podman's
    # own 32768) must be raised by runc, which needs CAP_SYS_RESOURCE: a VM
    # without it fails with "error setting rlimit type 7: operation not
    # permitted". Lowering is always allowed: 4096 of each is ample here.
    hn=$(ulimit -Hn); [ "$hn" = unlimited ] || [ "$hn" -ge 4096 ] || nofile=$hn
    hu=$(ulimit -Hu); [ "$hu" = unlimited ] || [ "$hu" -ge 4096 ] || nproc=$hu
    limits=(--ulimit "nofile=${nofile:-4096}:${nofile:-4096}" --ulimit "nproc=${nproc:-4096}:${nproc:-4096}")
    # Whether a container starts at all; a failure after this is the image's.
    if pm run --rm --network none "${limits[@]}" --entrypoint /bin/true "$tag" >"$tmp/probe.log" 2>&1; then
        used=podman
    else
        cat "$tmp/probe.log"
        [ "$mode" = auto ] || die "podman run cannot start a container here"
        say "podman run cannot start a container here (above); falling back to chroot into the image's root file system"
    fi
fi
if [ -z "$used" ]; then
    used=chroot
    ctr=$(pm create --network none "$tag")
    mnt=$(pm mount "$ctr")
    mount -t proc proc "$mnt/proc"
    mount --bind /dev "$mnt/dev"
    user=$(pm image inspect --format '{{.Config.User}}' "$tag")
    workdir=$(pm image inspect --format '{{.Config.WorkingDir}}' "$tag")
    uid=$(chroot "$mnt" id -u "$user")
    gid=$(chroot "$mnt" id -g "$user")
fi
in_image() {
    local data=$1 script=$2 vars=() v
    shift 2
    if [ "$used" = podman ]; then
        for v in "$@"; do vars+=(-e "$v"); done
        pm run --rm --network none "${limits[@]}" -v "$data:/data" "${vars[@]}" --entrypoint /bin/sh "$tag" -c "$script"
    else
        mount --bind "$data" "$mnt/data"
        local rc=0
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$workdir" "$@" \
            chroot --userspec="$uid:$gid" --groups="$gid" "$mnt" /bin/sh -c "cd '$workdir' && $script" || rc=$?
        umount "$mnt/data"
        return $rc
    fi
}
# The data directory of step 6 (and /data in step 5), owned by the image's user (uid 10001) as a
# Kubernetes volume must be.
mkdir -p "$tmp/data"
chown 10001:10001 "$tmp/data"

# 5. The README's first command twice in the image (quickstart@1 and @2, in
# ./smelt-data of the WORKDIR), then their digests.
say "smoke test ($used): smelt run examples/quickstart.yaml in $tag"
smoke='set -e
echo "user $(id -un) uid $(id -u) in $(pwd)"
[ "$(id -u)" != 0 ] || { echo "running as root" >&2; exit 1; }
smelt run examples/quickstart.yaml --no-progress
smelt run examples/quickstart.yaml --no-progress
smelt catalog show quickstart@1 --format json >/tmp/v1.json
smelt catalog show quickstart@2 --format json >/tmp/v2.json
sed -n "s/^  \"digest\": \"\(.*\)\",\$/\1/p" /tmp/v1.json /tmp/v2.json'
in_image "$tmp/data" "$smoke" >"$tmp/inside.log" 2>&1 \
    || { cat "$tmp/inside.log"; die "the quick start failed in the image ($used)"; }
cat "$tmp/inside.log"
got=$(tail -n 2 "$tmp/inside.log")
expected=$(printf '%s\n%s' "$want" "$want")
[ "$got" = "$expected" ] || die "quickstart@1 and @2 in the image have digests $(echo $got), not $want as outside the image"
say "quick start passed ($used): quickstart@1 and @2 committed in the image with digest $want, as outside"

# 6. The image runs what --executor k8s writes: the manifests for 2 ranks of
# the image's quick start (data directory /data, the PVC's mount point), then
# each Job's container command as the pods would run it (rank 0 and 1 with
# JOB_COMPLETION_INDEX, then the commit), each in a fresh container with only
# /data shared. The committed version must have the digest of a plain run of
# the same pipeline path in the image.
say "k8s manifests ($used): 2 ranks and the commit, each Job's command on its own"
in_image "$tmp/data" 'smelt --data-dir /data run /smelt/examples/quickstart.yaml --executor k8s --ranks 2 --pvc smelt-data --image '"$tag" \
    >"$tmp/k8s.log" 2>&1 || { cat "$tmp/k8s.log"; die "smelt run --executor k8s failed in the image"; }
run_dir=$(ls -d "$tmp"/data/k8s/*/ 2>/dev/null | head -1)
[ -n "$run_dir" ] || { cat "$tmp/k8s.log"; die "no manifests under /data/k8s"; }
# A container's command is ["/bin/sh", "-c", "<script>"]: the line after "-c".
job_script() { grep -A1 '^ *- "-c"$' "$1" | tail -n 1 | sed 's/^ *- //' | python3 -c 'import json, sys; print(json.loads(sys.stdin.read()))'; }
[ "$(grep -h 'image: ' "$run_dir"/phase0.yaml "$run_dir"/commit.yaml | sort -u | sed 's/^ *//')" = "image: \"$tag\"" ] \
    || die "the manifests do not name the image $tag"
for rank in 0 1; do
    in_image "$tmp/data" "$(job_script "$run_dir/phase0.yaml")" JOB_COMPLETION_INDEX=$rank >>"$tmp/k8s.log" 2>&1 \
        || { cat "$tmp/k8s.log"; die "rank $rank of the k8s Job failed in the image"; }
done
in_image "$tmp/data" "$(job_script "$run_dir/commit.yaml")" >>"$tmp/k8s.log" 2>&1 \
    || { cat "$tmp/k8s.log"; die "the k8s commit Job failed in the image"; }
in_image "$tmp/data" 'set -e
smelt --data-dir /data catalog show quickstart@1 --format json >/tmp/k8s.json
smelt --data-dir /tmp/plain run /smelt/examples/quickstart.yaml --no-progress >/dev/null 2>&1
smelt --data-dir /tmp/plain catalog show quickstart@1 --format json >/tmp/plain.json
sed -n "s/^  \"digest\": \"\(.*\)\",\$/\1/p" /tmp/k8s.json /tmp/plain.json' >"$tmp/k8s-digest.log" 2>&1 \
    || { cat "$tmp/k8s.log" "$tmp/k8s-digest.log"; die "no version committed by the k8s Jobs"; }
k8s=$(sed -n 1p "$tmp/k8s-digest.log") plain=$(sed -n 2p "$tmp/k8s-digest.log")
[ -n "$k8s" ] && [ "$k8s" = "$plain" ] || { cat "$tmp/k8s.log" "$tmp/k8s-digest.log"; die "the k8s Jobs committed digest '$k8s', a plain run in the image '$plain'"; }
say "k8s Jobs passed ($used): 2 ranks and the commit committed quickstart@1 in /data with digest $k8s, as a plain run"
say "image $tag passed its smoke tests in $((SECONDS - start))s"
