package postgres

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/keyward/keyward/internal/store"
)

// TestPayload: changes travel whole; a set too big for a notification, or
// a payload that cannot be read, becomes a flush; a node knows its own.
func TestPayload(t *testing.T) {
	cs := []store.Change{{Kind: store.ChangeKey, HSM: "H", ID: "k"}, {Kind: store.ChangeNode}}
	got, mine := decodeChanges("b", encodeChanges("a", cs))
	if mine || !reflect.DeepEqual(got, cs) {
		t.Errorf("decoded %v (mine %v), want %v", got, mine, cs)
	}
	if got, mine := decodeChanges("a", encodeChanges("a", cs)); !mine || got != nil {
		t.Errorf("own payload: %v, mine %v", got, mine)
	}
	var big []store.Change
	for i := range 500 {
		big = append(big, store.Change{Kind: store.ChangeKey, HSM: "hsm", ID: fmt.Sprintf("key-%d", i)})
	}
	p := encodeChanges("a", big)
	if len(p) > maxPayload {
		t.Errorf("payload of %d bytes", len(p))
	}
	all := []store.Change{{Kind: store.ChangeAll}}
	if got, _ := decodeChanges("b", p); !reflect.DeepEqual(got, all) {
		t.Errorf("big set decoded as %v, want a flush", got)
	}
	if got, _ := decodeChanges("b", "not json"); !reflect.DeepEqual(got, all) {
		t.Errorf("garbage decoded as %v, want a flush", got)
	}
}
