package store

import (
	"strings"
	"sync"
)

// Change names one record that a committed transaction wrote. Caches
// subscribe to changes (Store.Subscribe) and drop what a change names: it
// is their one invalidation path, and the place where a second node's
// notifications (PostgreSQL LISTEN/NOTIFY) come in.
type Change struct {
	Kind string
	// HSM is the HSM's name as the writer spelled it, for the kinds that
	// belong to an HSM; compare it without regard to case.
	HSM string
	// ID names the record within its kind (a key name, a principal id, an
	// object's id); "" means every record of the kind in HSM.
	ID string
}

// Change kinds.
const (
	// ChangeHSM: an HSM's record was inserted, changed or deleted. A
	// deleted HSM takes its keys and roles along without a change each.
	ChangeHSM = "hsm"
	// ChangeKey: a key or one of its versions (ID is the key's name).
	ChangeKey = "key"
	// ChangeRole: a role definition or assignment of HSM (ID is its id).
	ChangeRole = "role"
	// ChangePrincipal: a principal, its credentials or its memberships (ID
	// is the principal's id; for a membership, the group's).
	ChangePrincipal = "principal"
	// ChangeTokenKey: a token-signing key.
	ChangeTokenKey = "tokenKey"
	// ChangeStorageAccount and ChangeDiagnosticSetting: logging settings.
	ChangeStorageAccount    = "storageAccount"
	ChangeDiagnosticSetting = "diagnosticSetting"
	// ChangeJob: a backup or restore job of HSM.
	ChangeJob = "job"
	// ChangeNode: the node settings (ID "") or a delivery cursor (HSM and
	// ID are the diagnostic setting's).
	ChangeNode = "node"
	// ChangeAll: anything may have changed (HSM and ID are ""). A
	// PostgreSQL store delivers it when it cannot know what other nodes
	// committed (its LISTEN connection was lost, or a notification was too
	// big to send); every subscriber drops everything it holds.
	ChangeAll = "all"
)

// ObjectChange is the change kind of the objects of kind (Objects).
func ObjectChange(kind string) string { return "object/" + kind }

// SameHSM reports whether a change's HSM is hsm, without regard to case.
func (c Change) SameHSM(hsm string) bool { return strings.EqualFold(c.HSM, hsm) }

// Hub delivers committed changes to subscribers. Store implementations
// embed one and call Publish after each commit; a PostgreSQL store also
// calls it with what other nodes committed.
type Hub struct {
	mu   sync.RWMutex
	next int
	subs map[int]func([]Change)
}

// Subscribe calls fn with the changes of every later commit, in the
// committing goroutine before Update returns: fn must be quick and must
// not open a transaction. The returned function ends the subscription.
func (h *Hub) Subscribe(fn func([]Change)) (cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[int]func([]Change){}
	}
	id := h.next
	h.next++
	h.subs[id] = fn
	return func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
	}
}

// Publish hands changes to every subscriber.
func (h *Hub) Publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, fn := range h.subs {
		fn(changes)
	}
}
