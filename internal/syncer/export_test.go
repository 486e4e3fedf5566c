package syncer

// SetChunkPages makes a chunk transaction apply n task pages, so tests reach chunk boundaries
// with few tasks.
func (s *Syncer) SetChunkPages(n int) { s.chunkPages = n }

// SetHooks installs test hooks.
func (s *Syncer) SetHooks(h *Hooks) { s.hooks = h }
