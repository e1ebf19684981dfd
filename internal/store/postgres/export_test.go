package postgres

// ListenerPID is the backend pid of db's LISTEN connection.
func ListenerPID(db *DB) uint32 { return db.listener.pid.Load() }
