package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// writeValue writes the reply shared by every single-counter route,
// {"counter":..., "value":..., "node":...}, without reflection: it is the
// hot path. Counter names need no escaping (they are [A-Za-z0-9._-]).
func (s *Server) writeValue(w http.ResponseWriter, counter string, v int64) {
	b := make([]byte, 0, 64+len(counter)+len(s.nodeJSON))
	b = append(b, `{"counter":"`...)
	b = append(b, counter...)
	b = append(b, `","value":`...)
	b = strconv.AppendInt(b, v, 10)
	b = append(b, `,"node":`...)
	b = append(b, s.nodeJSON...)
	b = append(b, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	w.Write(b)
}

var jsonContentType = []string{"application/json"}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError answers err as {"error": "..."} with the status statusOf gives.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	switch {
	case status == http.StatusInternalServerError:
		s.log.Error("request failed", "err", err)
	case status >= 500:
		s.log.Debug("request failed", "status", status, "err", err)
	}
	writeErrorJSON(w, status, err.Error())
}

func writeErrorJSON(w http.ResponseWriter, status int, msg string) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(append(append(append([]byte(`{"error":`), jsonString(msg)...), '}'), '\n'))
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
