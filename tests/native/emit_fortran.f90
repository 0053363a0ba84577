! Fortran writer for the tests: list-directed WRITE to the default unit (stdout), never flushed.
subroutine fortran_write(n) bind(C, name="fortran_write")
    use iso_c_binding, only: c_int
    integer(c_int), value :: n
    write (*, '(A,I0)') 'fortran line ', n
end subroutine fortran_write
