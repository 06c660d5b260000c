package respapi

import (
	"countd/actors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// infoSections are INFO's sections, in order.
var infoSections = []string{"server", "clients", "replication", "keyspace"}

// cmdInfo: INFO [section ...]: server, clients, replication (countd's
// peers), keyspace; default, all and everything mean every one.
func cmdInfo(s *Server, c *client, w writer, args [][]byte) bool {
	want := map[string]bool{}
	for _, a := range args[1:] {
		switch sec := strings.ToLower(string(a)); sec {
		case "default", "all", "everything":
			for _, s := range infoSections {
				want[s] = true
			}
		default:
			want[sec] = true
		}
	}
	if len(args) == 1 {
		for _, s := range infoSections {
			want[s] = true
		}
	}
	var b strings.Builder
	line := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	for _, sec := range infoSections {
		if !want[sec] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		switch sec {
		case "server":
			b.WriteString("# Server\r\n")
			up := time.Since(s.cfg.Started)
			line("redis_version", redisVersion)
			line("redis_mode", "standalone")
			line("countd_node", s.cfg.Node)
			line("process_id", os.Getpid())
			line("run_id", s.cfg.Replica)
			line("tcp_port", s.Port())
			line("uptime_in_seconds", int64(up.Seconds()))
			line("uptime_in_days", int64(up.Hours()/24))
		case "clients":
			b.WriteString("# Clients\r\n")
			line("connected_clients", s.clients.Load())
		case "replication":
			if err := s.infoReplication(&b, line); err != nil {
				w.WriteError(errorReply(err))
				return false
			}
		case "keyspace":
			b.WriteString("# Keyspace\r\n")
			all, err := s.cfg.Counters.All(s.ctx)
			if err != nil {
				w.WriteError(errorReply(err))
				return false
			}
			if len(all.Values) > 0 {
				fmt.Fprintf(&b, "db0:keys=%d,expires=%d,avg_ttl=0\r\n", len(all.Values), len(all.Expires))
			}
		}
	}
	w.WriteBulkString(b.String())
	return false
}

// infoReplication writes the replication section: every node is a master
// (countd is multi-master), and its peers are listed as peerN lines.
func (s *Server) infoReplication(b *strings.Builder, line func(string, any)) error {
	b.WriteString("# Replication\r\n")
	line("role", "master")
	line("connected_slaves", 0)
	if s.cfg.Peers == nil {
		line("countd_peers", 0)
		return nil
	}
	peers, err := s.cfg.Peers.Peers(s.ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(peers, func(a, b actors.PeerInfo) int { return strings.Compare(a.Addr, b.Addr) })
	line("countd_peers", len(peers))
	for i, p := range peers {
		host, port, err := net.SplitHostPort(p.Addr)
		if err != nil {
			host, port = p.Addr, ""
		}
		fmt.Fprintf(b, "peer%d:ip=%s,port=%s,state=%s,behind=%d\r\n", i, host, port, p.State, p.Behind)
	}
	return nil
}
