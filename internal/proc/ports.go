package proc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// FreePorts returns n distinct ports on 127.0.0.1 for nodes that must know
// each other's numbers before they start (-peers); otherwise start a node
// with -port=0.
//
// A port the kernel hands out for "127.0.0.1:0" lies in the ephemeral range,
// where any outgoing connection on the machine may take it as its local
// port before the node binds it, and another test process may be handed it
// too. So FreePorts picks below the ephemeral range, where the kernel never
// hands out a port by itself, and reserves each port it returns for the
// rest of this process, against itself and against every other process
// that picks through FreePorts (reserve). A port is returned only if it
// could be bound just now.
func FreePorts(n int) ([]int, error) {
	low, high := pickRange()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("find %d free ports in %d-%d: %d found after %d tries", n, low, high, len(ports), tries)
		}
		port := low + rand.IntN(high-low+1)
		if !reserve(port) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use by something that does not reserve: leave it reserved, unused
		}
		ln.Close()
		ports = append(ports, port)
	}
	return ports, nil
}

// pickRange is the range FreePorts picks from: from 10000 up to the port
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range), or
// 20000-32767 where that cannot be read or leaves too little room.
func pickRange() (low, high int) {
	const floor = 10000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if first, err := strconv.Atoi(f[0]); err == nil && first-1-floor >= 4096 {
				return floor, first - 1
			}
		}
	}
	return 20000, 32767
}

var reserved = struct {
	sync.Mutex
	ports map[int]bool
	file  *os.File // the lock file shared by every process that picks ports; nil if it cannot be opened
	open  bool     // file was tried
}{ports: map[int]bool{}}

// reserve claims port for the rest of this process, or reports that this
// or another process holds it already. Across processes the claim is a
// lock on the port's byte of one file in the temporary directory (lockByte),
// which the kernel drops when the process ends, however it ends.
func reserve(port int) bool {
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.ports[port] {
		return false
	}
	if !reserved.open {
		reserved.open = true
		name := filepath.Join(os.TempDir(), "countd-test-ports.lock")
		if f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o666); err == nil {
			reserved.file = f // kept open: closing any descriptor of it drops the locks
		}
	}
	if reserved.file != nil && !lockByte(reserved.file, int64(port)) {
		return false
	}
	reserved.ports[port] = true
	return true
}
