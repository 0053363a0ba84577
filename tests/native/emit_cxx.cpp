// C++ writers for the tests, built at test time into their own shared object (never linked
// into fdredirect._native) and loaded with ctypes.
#include <iostream>

extern "C" {
void cxx_cout(const char *text) { std::cout << text; }        // no flush, no endl
void cxx_clog(const char *text) { std::clog << text; }        // clog is buffered too
void cxx_unsync() { std::ios_base::sync_with_stdio(false); }  // cout gets its own buffer
}
