//go:build !linux

package bare

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
