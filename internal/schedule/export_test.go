package schedule

import "time"

// Next is the first run of spec strictly after from, in UTC.
func Next(spec string, from time.Time) (time.Time, error) {
	sched, err := Parse(spec)
	if err != nil {
		return time.Time{}, err
	}
	return sched.Next(from.In(time.UTC)), nil
}
