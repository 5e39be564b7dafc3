use pyo3::prelude::*; #[pymodule] fn rust_book(_m: &Bound<PyModule>) -> PyResult<()> { Ok(()) }
