package logsink

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestSinkKeepsWholeLinesNewestLast(t *testing.T) {
	s := &Sink{}
	s.Write([]byte("a\nb"))
	s.Write([]byte("c\nd\n"))
	if got, kept := s.Last(0); !slices.Equal(got, []string{"a", "bc", "d"}) || kept != 3 {
		t.Fatalf("Last(0) = %q, %d", got, kept)
	}
	if got, _ := s.Last(2); !slices.Equal(got, []string{"bc", "d"}) {
		t.Fatalf("Last(2) = %q", got)
	}
	s.Logger("A").Info("hello")
	if got, _ := s.Last(1); len(got) != 1 || !strings.Contains(got[0], "msg=hello n=A") {
		t.Fatalf("logger line = %q", got)
	}
}

func TestSinkBoundedByMax(t *testing.T) {
	s := &Sink{Max: 10}
	for i := range 100 {
		s.Write([]byte(strconv.Itoa(i) + "\n"))
	}
	got, kept := s.Last(10)
	if kept > 20 || !slices.Equal(got, []string{"90", "91", "92", "93", "94", "95", "96", "97", "98", "99"}) {
		t.Fatalf("Last(10) = %q of %d kept, want the newest ten of at most 20", got, kept)
	}
}
