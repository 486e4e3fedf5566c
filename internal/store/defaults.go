package store

// PoolModeDefault is Options.PoolMode's default (DB_POOL_MODE): transaction mode on port 6543,
// Supabase's transaction pooler, session mode elsewhere (see resolvePoolMode).
const PoolModeDefault = "auto"

// supabasePoolerPort is the port of Supabase's transaction pooler, which "auto" takes for
// transaction mode.
const supabasePoolerPort = 6543
