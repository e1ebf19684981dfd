package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"

	"filippo.io/age"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
)

// A full backup (format.StreamVersion) is an age file: age gives the
// chunked, authenticated stream, so Keyward adds no construction of its
// own. Its one recipient is the HSM's domain key, which seals age's
// random file key; the stanza has no arguments, since the domain is bound
// by the seal's associated data.
const domainStanza = "keyward-domain"

func fileKeyAAD(domainID string) []byte { return []byte("keyward backup file key\x00" + domainID) }

// domainRecipient is an age Recipient and Identity: the domain key of h.
type domainRecipient struct{ h *domain.HSM }

func (r domainRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	sealed, err := r.h.Key.Encrypt(fileKey, fileKeyAAD(r.h.DomainID))
	if err != nil {
		return nil, err
	}
	return []*age.Stanza{{Type: domainStanza, Body: sealed}}, nil
}

func (r domainRecipient) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		if s.Type != domainStanza || len(s.Args) != 0 {
			continue
		}
		fileKey, err := r.h.Key.Decrypt(s.Body, fileKeyAAD(r.h.DomainID))
		if err != nil {
			return nil, fmt.Errorf("%w: the file key is sealed under another domain key", age.ErrIncorrectIdentity)
		}
		return fileKey, nil
	}
	return nil, age.ErrIncorrectIdentity
}

// backupPage is how many keys, and versions of a key, are read at once.
const backupPage = 500

// writeStream writes everything a backup of h holds, as tx reads it, to w
// sealed, a record at a time: custom roles, assignments, then each key
// (live, then deleted) followed by its versions.
func writeStream(ctx context.Context, tx store.Tx, h *domain.HSM, w io.Writer) (format.End, error) {
	var end format.End
	if err := sameHSM(ctx, tx, h); err != nil {
		return end, err
	}
	sealed, err := age.Encrypt(w, domainRecipient{h})
	if err != nil {
		return end, fmt.Errorf("backup: sealing: %w", err)
	}
	enc := json.NewEncoder(sealed)
	if err := enc.Encode(format.Header{Format: format.StreamVersion, DomainID: h.DomainID}); err != nil {
		return end, err
	}
	roles, err := tx.ListRoleDefinitions(ctx, h.Name)
	if err != nil {
		return end, err
	}
	for _, d := range roles {
		r := format.FromRoleDefinition(d)
		if err := enc.Encode(format.Record{Role: &r}); err != nil {
			return end, err
		}
		end.Roles++
	}
	assignments, err := tx.ListRoleAssignments(ctx, h.Name)
	if err != nil {
		return end, err
	}
	for _, a := range assignments {
		r := format.FromRoleAssignment(a)
		if err := enc.Encode(format.Record{Assignment: &r}); err != nil {
			return end, err
		}
		end.Assignments++
	}
	for _, deleted := range []bool{false, true} {
		for after := ""; ; {
			items, err := tx.ListKeys(ctx, h.Name, deleted, after, backupPage)
			if err != nil {
				return end, err
			}
			for _, it := range items {
				k := format.FromKey(&it.Key)
				if err := enc.Encode(format.Record{Key: &k}); err != nil {
					return end, err
				}
				end.Keys++
				n, err := writeVersions(ctx, tx, enc, h.Name, it.Key.Name)
				if err != nil {
					return end, err
				}
				end.Versions += n
			}
			if len(items) < backupPage {
				break
			}
			after = items[len(items)-1].Key.Name
		}
	}
	if err := enc.Encode(format.Record{End: &end}); err != nil {
		return end, err
	}
	return end, sealed.Close()
}

func writeVersions(ctx context.Context, tx store.Tx, enc *json.Encoder, hsm, key string) (int, error) {
	n := 0
	for seq := int64(0); ; {
		vs, err := tx.ListKeyVersions(ctx, hsm, key, seq, backupPage)
		if err != nil {
			return n, err
		}
		for i := range vs {
			v := format.FromKeyVersion(&vs[i])
			if err := enc.Encode(format.Record{Version: &v}); err != nil {
				return n, err
			}
			n++
		}
		if len(vs) < backupPage {
			return n, nil
		}
		seq = vs[len(vs)-1].Seq
	}
}

var (
	errNotOurs  = ErrBadBackup.With("the backup does not open with this HSM's domain key: altered, or another domain")
	errDamaged  = ErrBadBackup.With("the backup is truncated or altered")
	errNotValid = ErrBadBackup.With("the backup's content is not valid")
)

// readStream opens a format.StreamVersion backup sealed for h and yields
// its records, checking at the End that none was lost. A record is
// yielded only once age has authenticated its chunk; the caller applies
// records in a transaction that any error rolls back.
func readStream(r io.Reader, h *domain.HSM) iter.Seq2[format.Record, error] {
	return func(yield func(format.Record, error) bool) {
		plain, err := age.Decrypt(r, domainRecipient{h})
		if err != nil {
			if errors.Is(err, age.ErrIncorrectIdentity) {
				err = errNotOurs
			} else {
				err = errDamaged
			}
			yield(format.Record{}, err)
			return
		}
		dec := json.NewDecoder(plain)
		var hd format.Header
		if err := dec.Decode(&hd); err != nil {
			yield(format.Record{}, decodeError(err))
			return
		}
		if hd.Format != format.StreamVersion || hd.DomainID != h.DomainID {
			yield(format.Record{}, errNotValid)
			return
		}
		var seen format.End
		for {
			var rec format.Record
			if err := dec.Decode(&rec); err != nil {
				yield(format.Record{}, decodeError(err))
				return
			}
			switch {
			case fieldsSet(rec) != 1:
				yield(format.Record{}, errNotValid)
				return
			case rec.End != nil:
				var extra json.RawMessage
				if *rec.End != seen || dec.Decode(&extra) != io.EOF {
					yield(format.Record{}, errNotValid)
				}
				return
			case rec.Role != nil:
				seen.Roles++
			case rec.Assignment != nil:
				seen.Assignments++
			case rec.Key != nil:
				seen.Keys++
			case rec.Version != nil:
				seen.Versions++
			}
			if !yield(rec, nil) {
				return
			}
		}
	}
}

// decodeError tells a stream that age refused (altered or cut) from one
// that opened but does not decode.
func decodeError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return errNotValid
	}
	return errDamaged // io.EOF before End, or a chunk that does not authenticate
}

func fieldsSet(r format.Record) int {
	n := 0
	for _, set := range []bool{r.Role != nil, r.Assignment != nil, r.Key != nil, r.Version != nil, r.End != nil} {
		if set {
			n++
		}
	}
	return n
}
