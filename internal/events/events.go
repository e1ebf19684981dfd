// Package events publishes key life-cycle events (Event Grid's
// Microsoft.KeyVault.* types) as CloudEvents to webhooks, behind the
// caller, with retries.
package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Event types, as Azure Event Grid names them for Key Vault.
const (
	KeyNewVersionCreated = "Microsoft.KeyVault.KeyNewVersionCreated"
	KeyNearExpiry        = "Microsoft.KeyVault.KeyNearExpiry"
	KeyExpired           = "Microsoft.KeyVault.KeyExpired"
)

// Event is a CloudEvents 1.0 envelope in structured JSON mode.
type Event struct {
	SpecVersion     string `json:"specversion"`
	Type            string `json:"type"`
	Source          string `json:"source"`
	ID              string `json:"id"`
	Time            string `json:"time"`
	Subject         string `json:"subject"`
	DataContentType string `json:"datacontenttype"`
	Data            Data   `json:"data"`
	// PIM, when set, is sent as data instead of Data (see MarshalJSON).
	PIM *PIMData `json:"-"`
}

// Data is the payload Event Grid sends for key events.
type Data struct {
	ID         string `json:"Id"`
	VaultName  string `json:"VaultName"`
	ObjectType string `json:"ObjectType"`
	ObjectName string `json:"ObjectName"`
	Version    string `json:"Version"`
	NBF        *int64 `json:"NBF"`
	EXP        *int64 `json:"EXP"`
}

// New fills an event's envelope.
func New(typ, source string, at time.Time, d Data) Event {
	d.ObjectType = "Key"
	return Event{SpecVersion: "1.0", Type: typ, Source: source, ID: uuid.NewString(), Time: at.UTC().Format(time.RFC3339),
		Subject: d.ObjectName, DataContentType: "application/json", Data: d}
}

// Publisher delivers events to every webhook, each in order, retrying
// failures with backoff. A full queue drops the oldest event (and logs it)
// rather than block key rotation.
type Publisher struct {
	hooks   []string
	client  *http.Client
	log     *slog.Logger
	retries int
	backoff time.Duration

	mu    sync.Mutex
	queue []Event
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

const maxQueue = 10000

// NewPublisher starts a publisher for hooks (none: events are dropped).
func NewPublisher(hooks []string, client *http.Client, log *slog.Logger) *Publisher {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	p := &Publisher{hooks: hooks, client: client, log: log, retries: 5, backoff: 500 * time.Millisecond,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// Publish queues e for delivery.
func (p *Publisher) Publish(e Event) {
	if len(p.hooks) == 0 {
		return
	}
	p.mu.Lock()
	if len(p.queue) >= maxQueue {
		p.log.Error("event queue full; dropping the oldest event", "type", p.queue[0].Type, "subject", p.queue[0].Subject)
		p.queue = p.queue[1:]
	}
	p.queue = append(p.queue, e)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close stops delivery after the event in flight.
func (p *Publisher) Close() error {
	close(p.stop)
	<-p.done
	return nil
}

func (p *Publisher) loop() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-p.stop; cancel() }()
	for {
		p.mu.Lock()
		var e *Event
		if len(p.queue) > 0 {
			e = &p.queue[0]
			p.queue = p.queue[1:]
		}
		p.mu.Unlock()
		if e == nil {
			select {
			case <-p.stop:
				return
			case <-p.wake:
			}
			continue
		}
		for _, h := range p.hooks {
			p.deliver(ctx, h, *e)
		}
	}
}

func (p *Publisher) deliver(ctx context.Context, hook string, e Event) {
	body, _ := json.Marshal(e)
	wait := p.backoff
	for attempt := 1; ; attempt++ {
		err := p.post(ctx, hook, body)
		if err == nil {
			return
		}
		if attempt == p.retries || ctx.Err() != nil {
			p.log.Error("event not delivered", "hook", hook, "type", e.Type, "subject", e.Subject, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (p *Publisher) post(ctx context.Context, hook string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
