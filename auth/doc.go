// Package auth proves that node-to-node requests come from a node of the
// same cluster: a Keyring of shared keys, loaded from a key file, signs
// outgoing requests and verifies incoming ones.
//
// A signature is an HMAC-SHA256, under one key, of the request's method,
// its path with query, a Unix timestamp and the SHA-256 of its body,
// carried in one header:
//
//	Countd-Signature: t=1767225600,k=1a2b3c4d,s=<64 hex digits>
//
// k names the key by an id derived from it (an HMAC of a fixed string), so
// the key itself never crosses the wire. The first key of the ring signs;
// every key verifies, so a key is rotated with no downtime: put the new key
// first and keep the old one second on every node, reload, then drop the
// old one and reload again. A signature whose timestamp is more than
// Window from the verifier's clock is refused, which bounds how long a
// captured request can be replayed.
package auth
