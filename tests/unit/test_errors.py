"""errors.run_main's boundary: an error a library's clean-up raises while an interrupt unwinds the
program is the interrupt (exit 130, no traceback); the same error alone is still a bug (exit 1)."""
import io

from glassformer.errors import EXIT_BUG, EXIT_INTERRUPTED, Terminated, run_main


def test_an_error_raised_while_an_interrupt_unwinds_is_the_interrupt():
    """numpy.savez met SIGTERM inside a zip member's close; its `finally` closing the archive raised
    ValueError over the Terminated (seen once in 12 tries of tests/robustness/test_signals.py)."""
    def main():
        try:
            raise Terminated
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it")
    err = io.StringIO()
    assert run_main(main, stderr=err, interrupted="interrupted") == EXIT_INTERRUPTED
    assert err.getvalue() == "interrupted\n"                # no traceback


def test_the_same_error_alone_is_still_a_bug_with_its_traceback():
    def main():
        raise ValueError("Can't close the ZIP file while there is an open writing handle on it")
    err = io.StringIO()
    assert run_main(main, stderr=err) == EXIT_BUG
    assert "Traceback" in err.getvalue()


def test_an_error_handled_after_an_interrupt_was_caught_is_still_a_bug():
    def main():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass                                            # handled: what follows is not its doing
        raise ValueError("a real bug")
    err = io.StringIO()
    assert run_main(main, stderr=err) == EXIT_BUG
