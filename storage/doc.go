// Package storage is the contract between Starling's server and its
// databases: the models, the Store interface and the sentinel errors every
// backend returns.
//
// The database is the single source of truth. A backend must make these
// guarantees, which the conformance suite in storagetest checks:
//
//   - Per conversation, seq is 1, 2, 3, … with no gaps and no repeats, and is
//     assigned in the same transaction that stores the message, so a rolled
//     back transaction leaves no hole.
//   - A message is identified for dedup by (sender, client_msg_id): storing
//     it again returns the first copy, marked Duplicate, and stores nothing.
//   - When AppendMessages returns nil, every result is durable (committed
//     and on disk).
//   - Cursors only move forward.
//   - A group change (ChangeGroup) and its system message are one
//     transaction, decided inside it: both are stored or neither, and the
//     periods it starts and ends meet the message's seq.
//   - A node number is leased to one holder at a time, by the database's
//     clock, and a lapsed lease is not given to another holder until the
//     grace has passed (NodeLeases).
//
// Backends: storage/sqlite (the embedded default) and storage/postgres
// (CockroachDB or PostgreSQL). Implementations are safe for concurrent use.
package storage
