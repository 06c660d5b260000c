package bare

import (
	"sync/atomic"

	"github.com/tidwall/redcon"
)

// RESPServer is the yardstick over the Redis protocol, on tidwall/redcon as
// countd's RESP port (respapi) is: every command is an INCR of one counter,
// answered with the new value, with no command table, validation or actor,
// and one add per pipeline. With s set it is the durable yardstick: the
// replies wait for s's next group-committed fdatasync, one per pipeline.
// Serve it on a listener; Close stops it.
func RESPServer(s *Syncing) *redcon.Server {
	value := new(atomic.Int64) // without a disk, the value alone
	if s != nil {
		value = &s.value
	}
	handler := func(conn redcon.Conn, _ redcon.Command) {
		n := int64(1 + len(conn.ReadPipeline()))
		last := value.Add(n)
		if s != nil {
			if err := s.durable(); err != nil {
				for range n {
					conn.WriteError("ERR " + err.Error())
				}
				return
			}
		}
		for v := last - n + 1; v <= last; v++ {
			conn.WriteInt64(v)
		}
	}
	return redcon.NewServerNetwork("tcp", "", handler, nil, nil)
}
