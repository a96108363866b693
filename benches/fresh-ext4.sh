# Sourced by the bench scripts: makes "$work/mnt" a fresh ext4 file system
# (an 8 GiB sparse image with a million inodes, since a bench run creates
# several hundred thousand files; loop-mounted, so it needs root),
# unmounted and removed on exit.
# On a disk that just deleted tens of thousands of files, ext4 spends most
# of a first render skipping "recently deleted" inodes, which would be
# measured instead of unitgen.
work=$(mktemp -d)
cleanup() {
  cd /
  umount "$work/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s 8G "$work/fs.img"
mkfs.ext4 -q -F -N 1000000 "$work/fs.img"
mkdir "$work/mnt"
mount -o loop "$work/fs.img" "$work/mnt"
