"""The tests' support layer: where the project's files are (`project`), plan files (`plans`), the fakes
(`fake_runtime`, `fake_host`, `fake_nvml`), event readers (`events`), processes and servers the tests start
(`processes`, `mock`), waits with deadlines (`waits`), and what several test packages build alike (`records`,
`replay`, `kernel_inputs`). tests/conftest.py holds the fixtures built on them."""
