package probetest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stamps records when each heartbeat number first appears on serial.
type stamps struct {
	mu sync.Mutex
	at map[int]time.Time
}

// watch polls v's serial every 20 ms and stamps each new heartbeat
// until stop is closed or QEMU ends.
func (s *stamps) watch(v *VM, stop <-chan struct{}) {
	for {
		now := time.Now()
		for _, m := range HeartbeatRE.FindAllStringSubmatch(v.Serial.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			s.mu.Lock()
			if _, ok := s.at[n]; !ok {
				s.at[n] = now
			}
			s.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-v.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopCont pauses a guest that prints a heartbeat every half second
// over QMP for 4 s: no heartbeat while stopped (but one on its way),
// the next number after cont, the pause visible as the gap between the
// two lines and not in the interval after it, and every number once,
// in order, each a line of its own right after marker: nothing from the
// firmware between them.
func StopCont(t testing.TB, v *VM, marker string) {
	t.Helper()
	v.WaitFor(regexp.MustCompile(`tinyvm heartbeat 3\r\n`), "heartbeat before stop")
	s := &stamps{at: map[int]time.Time{}}
	stop := make(chan struct{})
	go s.watch(v, stop)
	v.Exec("stop")
	before := LastHeartbeat(v.Serial.String())
	const pause = 4 * time.Second
	time.Sleep(pause)
	last := LastHeartbeat(v.Serial.String())
	if last > before+1 {
		// One line may have been on its way when stop landed.
		t.Errorf("heartbeats went on while stopped: %d, then %d", before, last)
	}
	v.Exec("cont")
	v.WaitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, last+2)), "heartbeats after cont")
	time.Sleep(100 * time.Millisecond) // let the watcher stamp it
	close(stop)
	s.mu.Lock()
	defer s.mu.Unlock()
	gap, next := s.at[last+1].Sub(s.at[last]), s.at[last+2].Sub(s.at[last+1])
	t.Logf("heartbeat %d, then %d after cont: gap %v, then %v to %d", last, last+1, gap, next, last+2)
	// The watcher stamps a line within its 20 ms poll, so the pause
	// shows whole but for that slack.
	if gap < pause-200*time.Millisecond {
		t.Errorf("gap between heartbeat %d and %d is %v, want the %v pause in it", last, last+1, gap, pause)
	}
	if next >= gap {
		t.Errorf("the interval after the pause (%v) is no shorter than the gap (%v)", next, gap)
	}
	want := marker
	for n := 1; n <= last+2; n++ {
		want += fmt.Sprintf("tinyvm heartbeat %d\r\n", n)
	}
	if out := v.Serial.String(); !strings.Contains(out, want) {
		t.Errorf("serial does not hold each heartbeat once, in order, after the marker %q: %q", want, Tail(out))
	}
}

// Migration live-migrates a guest that prints a heartbeat every half
// second between two QEMUs on loopback: start starts one on the same
// disk, with -incoming when incoming is not "". The source prints
// nothing once the migration completed, the destination's first
// heartbeat is the one after the source's last, the destination did not
// boot afresh (no marker), and its power button still powers off.
func Migration(t testing.TB, start func(incoming string) *VM, marker string) {
	t.Helper()
	src := start("")
	src.WaitFor(regexp.MustCompile(`tinyvm heartbeat 2\r\n`), "source heartbeat")
	uri := fmt.Sprintf("tcp:127.0.0.1:%d", FreePort(t))
	// The destination opens the same image: the source stops writing
	// before the switch, as with shared storage.
	dst := start(uri)
	for deadline := time.Now().Add(dst.timeout); ; {
		st := dst.status("query-status")
		if st == "inmigrate" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the destination is %q, not waiting for the migration", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	src.QMP(map[string]any{"execute": "migrate", "arguments": map[string]any{"uri": uri}})
	for deadline := time.Now().Add(src.timeout); ; {
		st := src.status("query-migrate")
		if st == "completed" {
			break
		}
		if st == "failed" || st == "cancelled" || time.Now().After(deadline) {
			t.Fatalf("migration %s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	last := LastHeartbeat(src.Serial.String())
	time.Sleep(time.Second) // the source stays paused after migrating
	if again := LastHeartbeat(src.Serial.String()); again != last {
		t.Errorf("the source printed heartbeat %d after the migration completed at %d", again, last)
	}
	dst.WaitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, last+1)), "destination heartbeat")
	if first := HeartbeatRE.FindStringSubmatch(dst.Serial.String()); Atoi(t, first[1]) != last+1 {
		t.Errorf("the destination's first heartbeat is %s, want %d, the one after the source's last", first[1], last+1)
	}
	if strings.Contains(dst.Serial.String(), marker) {
		t.Errorf("the destination booted afresh (printed the marker): %q", Tail(dst.Serial.String()))
	}
	t.Logf("source stopped at heartbeat %d, destination went on with %d", last, last+1)
	dst.Exec("system_powerdown")
	dst.Exits("power button on the destination")
}
