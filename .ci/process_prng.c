/*
 * A stand-in bcryptprimitives.dll for running the Windows tests under Wine 8.
 *
 * Rust's standard library imports ProcessPrng from bcryptprimitives.dll (Windows 10
 * and later); Wine 8 does not export it, so every Rust program fails to start. This
 * DLL exports ProcessPrng on top of RtlGenRandom (advapi32's SystemFunction036), which
 * Wine has. Placed next to a test .exe, it is loaded instead of Wine's own.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll process_prng.c
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
