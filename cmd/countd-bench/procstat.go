package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux fixes it at 100 for user space on every architecture Go supports.
const clockTicks = 100

// procStat is what /proc says about one process.
type procStat struct {
	// CPU is user plus system time since the process started.
	CPU time.Duration
	// RSS is the resident set size now (VmRSS), in bytes.
	RSS uint64
	// PeakRSS is the largest resident set size so far (VmHWM), in bytes.
	PeakRSS uint64
	// Anon and File split RSS (RssAnon, RssFile; 0 if the kernel does not
	// say): the heap and stacks, and mapped files such as the bbolt file.
	Anon, File uint64
}

// readCPU returns the CPU time (utime+stime) pid has used so far, from
// /proc/<pid>/stat.
func readCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		var cpu time.Duration
		if cpu, err = parseStat(stat); err == nil {
			return cpu, nil
		}
	}
	return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procStat, error) {
	cpu, err := readCPU(pid)
	if err != nil {
		return procStat{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	ps, err := parseStatus(status)
	if err != nil {
		return procStat{}, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	ps.CPU = cpu
	return ps, nil
}

// parseStat returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat: no ')'")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("malformed stat: %d fields after the command name", len(f))
	}
	u, err := strconv.ParseUint(string(f[utime]), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("malformed stat utime: %w", err)
	}
	s, err := strconv.ParseUint(string(f[stime]), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("malformed stat stime: %w", err)
	}
	ticks := u + s
	return time.Duration(ticks/clockTicks)*time.Second +
		time.Duration(ticks%clockTicks)*(time.Second/clockTicks), nil
}

// parseStatus returns VmRSS and VmHWM (both required), RssAnon and RssFile,
// in bytes, from the text of /proc/<pid>/status (lines like
// "VmHWM:\t   12345 kB").
func parseStatus(b []byte) (ps procStat, err error) {
	var haveRSS, haveHWM bool
	for line := range bytes.Lines(b) {
		key, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *uint64
		switch string(key) {
		case "VmRSS":
			dst, haveRSS = &ps.RSS, true
		case "VmHWM":
			dst, haveHWM = &ps.PeakRSS, true
		case "RssAnon":
			dst = &ps.Anon
		case "RssFile":
			dst = &ps.File
		default:
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return procStat{}, fmt.Errorf("malformed status line %q", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 53)
		if err != nil {
			return procStat{}, fmt.Errorf("malformed status line %q: %w", bytes.TrimSpace(line), err)
		}
		*dst = kb * 1024
	}
	if !haveRSS || !haveHWM {
		return procStat{}, fmt.Errorf("status has no VmRSS or VmHWM line")
	}
	return ps, nil
}
