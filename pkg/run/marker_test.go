package run

import "testing"

func TestMarkerWatch(t *testing.T) {
	for _, writes := range [][]string{
		{"Hello World!\r\n"},
		{"noise Hel", "lo Wor", "ld!"},
		{"H", "e", "l", "l", "o", " ", "W", "o", "r", "l", "d", "!"},
	} {
		w := &markerWatch{marker: []byte("Hello World!"), found: make(chan struct{})}
		for _, s := range writes {
			if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", s, n, err)
			}
		}
		select {
		case <-w.found:
		default:
			t.Errorf("%q: marker not found", writes)
		}
		w.Write([]byte("Hello World! again")) // found once: no second close
	}
	w := &markerWatch{marker: []byte("Hello World!"), found: make(chan struct{})}
	w.Write([]byte("Hello Wor"))
	w.Write([]byte("xld!Hello World"))
	select {
	case <-w.found:
		t.Error("found a marker that is not there")
	default:
	}
	if len(w.tail) > len("Hello World!")-1 {
		t.Errorf("keeps %d bytes, want at most %d", len(w.tail), len("Hello World!")-1)
	}
}
