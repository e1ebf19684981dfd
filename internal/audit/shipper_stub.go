package audit

// Shipper delivers a stream's journal to a network sink.
type Shipper struct{}

func (s *Shipper) full() error { return nil }
