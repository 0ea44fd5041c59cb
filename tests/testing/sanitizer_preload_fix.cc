// Preloaded after the sanitizer runtimes into the stock mosquitto of the
// sanitize run (tests/CMakeLists.txt), and nowhere else.
//
// Why: a preloaded ASan runtime initializes after the constructors of the
// libraries mosquitto links (load order), so its first intercepted malloc
// can come from inside one of them. libgpg-error's constructor calls
// bindtextdomain(), which allocates while it holds glibc's gettext lock;
// ASan initializes right there and, looking up swift_demangle with dlsym(),
// calls dlerror(), which translates the "undefined symbol" message through
// the same lock, taken again on the same thread. The lock's count ends up
// corrupt, and the next gettext call (libpq's first error message, or
// bindtextdomain in its first connection) or freelocale() (p11-kit's
// destructor) waits forever: a broker on PostgreSQL hangs, and so does
// `LD_PRELOAD=libasan.so psql --version`.
//
// With swift_demangle defined, dlsym() succeeds, dlerror() has no message to
// translate, and the lock is left alone. It never demangles anything (ASan
// then prints the name as it is).
#include <cstddef>
#include <cstdint>

extern "C" __attribute__((visibility("default"))) char* swift_demangle(
    const char* /*mangled*/, size_t /*length*/, char* /*out*/,
    size_t* /*out_length*/, uint32_t /*flags*/) {
  return nullptr;
}
