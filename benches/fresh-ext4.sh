# Sourced by the bench scripts: makes "$work/mnt" a fresh ext4 file system
# (a 2 GiB image, loop-mounted; needs root), unmounted and removed on exit.
# On a disk that just deleted tens of thousands of files, ext4 spends most
# of a first render skipping "recently deleted" inodes, which would be
# measured instead of unitgen.
work=$(mktemp -d)
cleanup() {
  umount "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s 2G "$work/fs.img"
mkfs.ext4 -q -F "$work/fs.img"
mkdir "$work/mnt"
mount -o loop "$work/fs.img" "$work/mnt"
