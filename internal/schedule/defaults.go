package schedule

// SpecDefault is the cycle schedule's default (SYNC_SCHEDULE): every five minutes, in UTC.
const SpecDefault = "*/5 * * * *"
