#include <cblas.h>
// Provided by OpenBLAS; declared in cblas.h of most versions, repeated here for older headers.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
