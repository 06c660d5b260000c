//go:build !linux

package proc

import "os"

// lockByte claims nothing across processes outside Linux: FreePorts still
// picks below the ephemeral range and never hands a port out twice within
// one process.
func lockByte(*os.File, int64) bool { return true }
