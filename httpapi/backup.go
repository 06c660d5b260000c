package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors of GET /backup: a node that keeps nothing on disk (409), and a
// snapshot that failed (500).
var (
	errNoDataFile   = errors.New("httpapi: no data file to back up")
	errBackupFailed = errors.New("httpapi: snapshot failed")
)

// noDataFileMsg is the 409 a -memory node gives GET /backup.
const noDataFileMsg = "this node keeps no data file (-memory), so it has nothing to back up; " +
	"back up a node that runs with -data-dir"

// backupFailedMsg is the 500 when the node could not take the snapshot.
const backupFailedMsg = "the node could not take a snapshot of its data file " +
	"(it needs free space in its data dir for one more copy of the file while it is taken); the node's log has the details"

// backupIdle is how long a backup's stream may make no progress before the
// server gives up on the client: the server's write timeout (sized for
// one request) would cut a large file short, so GET /backup sets its own
// deadline before each write.
const backupIdle = 30 * time.Second

// handleBackup serves GET /backup: a consistent copy of the node's data
// file (Config.Snapshot), streamed while the node keeps serving. Put it
// into a data dir as countd.db to restore; the copy is marked so that the
// node started on it begins a new lineage of replica ids, wherever the
// file is put (docs/design.md, "Storage"; store.DB.Snapshot).
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Snapshot == nil {
		s.writeError(w, &clientError{kind: errNoDataFile, msg: noDataFileMsg})
		return
	}
	began := time.Now()
	snap, size, err := s.cfg.Snapshot()
	if err != nil {
		s.log.Error("backup: taking the snapshot failed", "err", err)
		s.writeError(w, &clientError{kind: errBackupFailed, msg: backupFailedMsg})
		return
	}
	defer snap.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Disposition", `attachment; filename="`+backupName(s.cfg.Node, began)+`"`)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	sent, err := io.Copy(deadlineWriter{w: w, rc: http.NewResponseController(w)}, snap)
	if err != nil {
		// The status is sent; the client sees a body shorter than its
		// Content-Length.
		s.log.Warn("backup: the stream was cut short", "remote", r.RemoteAddr, "sent", sent, "bytes", size, "err", err)
		return
	}
	s.log.Info("backup sent", "remote", r.RemoteAddr, "bytes", sent, "took", time.Since(began).Round(time.Millisecond))
}

// backupName is the file name GET /backup suggests: the node's address
// and the time, countd-10.0.0.1-8080-20260102T150405Z.db.
func backupName(node string, at time.Time) string {
	safe := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, node)
	return "countd-" + safe + "-" + at.UTC().Format("20060102T150405Z") + ".db"
}

// deadlineWriter moves the connection's write deadline backupIdle ahead of
// each write, so a stream that makes progress is never cut and one that
// stalls ends.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	// An error means the writer cannot set deadlines (a test's recorder);
	// the server's own timeout then stands.
	_ = d.rc.SetWriteDeadline(time.Now().Add(backupIdle))
	return d.w.Write(p)
}
