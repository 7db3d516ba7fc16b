package storage

// TxStats counts a backend's write transactions, for metrics. A backend
// that retries transactions (the Postgres wire) has a method
// TxStats() TxStats; callers find it with a type assertion.
type TxStats struct {
	Transactions    int64 // write transactions run
	Attempts        int64 // attempts, first tries and retries alike
	CommitConflicts int64 // COMMITs refused with a serialization failure (40001)
}
