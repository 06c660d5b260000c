// Command eventloop is a yardstick for countd's RESP port (issue 16),
// outside countd's module so that countd does not depend on gnet: a server
// that answers every RESP command as an INCR of one counter (an atomic
// add), on the network layer chosen by -lib:
//
//   - redcon: tidwall/redcon, a goroutine per connection, as countd's
//     RESP port (the same as countd-bench's bare RESP yardstick);
//   - gnet: panjf2000/gnet/v2, an epoll event loop per core, as Redis's
//     own model, the add made on the loop;
//   - gnet-owner: the same loops, but the add is made by one goroutine
//     that owns the value, as countd's CounterActor owns the counters:
//     the loop hands it each batch and it answers with AsyncWrite. With
//     -fsync=FILE the owner takes every batch waiting, writes the value to
//     FILE and fdatasyncs it once for all of them before it answers (group
//     commit, as countd's durable node and Redis's appendfsync always).
//
// run.sh loads both and redis-server with redis-benchmark in one run, to
// measure how close each network layer comes to Redis on this machine
// (BENCHMARKS.md, "Redis protocol").
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/panjf2000/gnet/v2"
	"github.com/tidwall/redcon"
)

func main() {
	lib := flag.String("lib", "gnet", "network layer: gnet or redcon")
	addr := flag.String("addr", "127.0.0.1:7001", "address to listen on")
	fsync := flag.String("fsync", "", "with -lib=gnet-owner: answer once the value is fdatasynced to this file")
	flag.Parse()
	var err error
	switch *lib {
	case "gnet":
		err = gnet.Run(&gnetServer{}, "tcp://"+*addr, gnet.WithMulticore(true))
	case "gnet-owner":
		s := &gnetServer{owner: make(chan batch, 1024)}
		if *fsync != "" {
			if s.file, err = os.Create(*fsync); err != nil {
				break
			}
		}
		go s.own()
		err = gnet.Run(s, "tcp://"+*addr, gnet.WithMulticore(true))
	case "redcon":
		var v atomic.Int64
		err = redcon.ListenAndServe(*addr, func(conn redcon.Conn, _ redcon.Command) {
			n := int64(1 + len(conn.ReadPipeline())) // one add per pipeline
			last := v.Add(n)
			for x := last - n + 1; x <= last; x++ {
				conn.WriteInt64(x)
			}
		}, nil, nil)
	default:
		err = fmt.Errorf("unknown -lib %q", *lib)
	}
	fmt.Fprintln(os.Stderr, "eventloop:", err)
	os.Exit(1)
}

// gnetServer answers on the event loop: every complete command in what a
// connection sent is one INCR, one add for all of them, one write.
type gnetServer struct {
	gnet.BuiltinEventEngine
	v     atomic.Int64
	owner chan batch // with -lib=gnet-owner, where batches go
	file  *os.File   // with -fsync, where the owner writes the value
}

// batch is n INCRs from one connection, for the owner.
type batch struct {
	c gnet.Conn
	n int64
}

// own is the owner goroutine: it makes each batch's add and hands the
// replies back to the connection's loop.
func (s *gnetServer) own() {
	if s.file == nil {
		for b := range s.owner {
			b.c.AsyncWrite(s.replies(b.n), nil)
		}
		return
	}
	page := make([]byte, 4096)
	var group []batch
	for b := range s.owner {
		group = append(group[:0], b)
	gather:
		for {
			select {
			case b := <-s.owner:
				group = append(group, b)
			default:
				break gather
			}
		}
		replies := make([][]byte, len(group))
		for i, b := range group {
			replies[i] = s.replies(b.n)
		}
		binary.BigEndian.PutUint64(page, uint64(s.v.Load()))
		if _, err := s.file.WriteAt(page, 0); err != nil {
			panic(err)
		}
		if err := syscall.Fdatasync(int(s.file.Fd())); err != nil {
			panic(err)
		}
		for i, b := range group {
			b.c.AsyncWrite(replies[i], nil)
		}
	}
}

// replies adds n and returns the n INCR replies.
func (s *gnetServer) replies(n int64) []byte {
	last := s.v.Add(n)
	out := make([]byte, 0, 16*n)
	for x := last - n + 1; x <= last; x++ {
		out = append(strconv.AppendInt(append(out, ':'), x, 10), '\r', '\n')
	}
	return out
}

func (s *gnetServer) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	rest, n := buf, int64(0)
	var args [][]byte
	for {
		complete, _, _, left, err := redcon.ReadNextCommand(rest, args[:0])
		if err != nil {
			return gnet.Close
		}
		if !complete {
			break
		}
		n++
		rest = left
	}
	c.Discard(len(buf) - len(rest))
	switch {
	case n == 0:
	case s.owner != nil:
		s.owner <- batch{c, n}
	default:
		c.Write(s.replies(n))
	}
	return gnet.None
}
