// Package discovery finds peers through DNS, as -peers and -newnode ask
// with dns+HOST:PORT, dnssrv+_SERVICE._tcp.DOMAIN and
// dnssrvnoa+_SERVICE._tcp.DOMAIN (the forms of Thanos and Grafana's dskit).
//
// ParseSpec reads a spec; Resolve looks one up with a Resolver (the system
// resolver, net.DefaultResolver, in production); a Loop resolves every
// spec at start and then every interval, and hands each address found,
// other than the node's own, to a register function. It never removes a
// peer: an address whose record vanished is left to failure detection and
// reaping, and one the node removed stays removed (the Supervisor skips
// addresses it tombstoned; see actors.RegisterPeer.FromDiscovery).
// docs/design.md §7 tells how this fits membership.
package discovery
