package proc

import (
	"io"
	"os"
	"syscall"
)

// lockByte takes a write lock on byte off of f without waiting, and reports
// whether it got it. The lock is the process's (fcntl), so it lasts until
// the process ends or closes f.
func lockByte(f *os.File, off int64) bool {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: off, Len: 1}
	return syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk) == nil
}
