package bare

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data as bbolt does on Linux: without the inode's
// timestamps, which a store does not need.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
