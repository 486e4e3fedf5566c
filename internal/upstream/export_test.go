package upstream

import "errors"

// KindOf returns the Kind of the *Error in err's chain, or 0 when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}
