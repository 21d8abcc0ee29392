//go:build linux || darwin || freebsd

package reports

import "syscall"

// freeSpace is the space left to unprivileged users on dir's filesystem.
func freeSpace(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
