// Package sqlite is Starling's embedded storage backend: one SQLite file,
// through modernc.org/sqlite (pure Go, no cgo).
//
// Durability comes first: the file is in WAL mode with synchronous=FULL, so
// when a write method returns nil its transaction is on disk, and a SendAck
// written after AppendMessages returns is never a lie. Throughput comes from
// batching: AppendMessages stores a whole batch in one transaction, which
// costs one fsync.
//
// SQLite allows one writer at a time, so a Store has exactly one write
// connection, whose transactions begin IMMEDIATE (they take the write lock
// up front and so cannot fail half-way on a lock upgrade), and a separate
// pool of query-only connections. In WAL mode readers see the last commit
// and never wait for the writer.
//
// Open creates the file and runs the embedded, versioned migrations (see
// migrate.go); opening the same file again is a restart and changes nothing.
// Times are stored as unix milliseconds in UTC and read back in UTC.
//
// Deviations the contract leaves open: a limit <= 0 in ListMessages and
// ListMessagesBefore returns no messages; maxMembers <= 0 means no limit; a
// message whose Members are not all users fails its whole batch with
// storage.ErrNotFound (the server checks them before sending).
package sqlite
