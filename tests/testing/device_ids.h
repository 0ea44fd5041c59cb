// Device ids on both sides of every clause of the rule of common/device.h,
// for the tests that hold a spelling of the rule (a schema's CHECK) to
// DeviceIdProblem.
#ifndef HOMEPOT_TESTS_TESTING_DEVICE_IDS_H_
#define HOMEPOT_TESTS_TESTING_DEVICE_IDS_H_

#include <string>
#include <vector>

namespace homepot {
namespace test {

// Valid and invalid ids: too short and too long (in bytes and characters),
// + # / $, NUL and other control characters, invalid UTF-8.
const std::vector<std::string>& DeviceIdCorpus();

}  // namespace test
}  // namespace homepot

#endif  // HOMEPOT_TESTS_TESTING_DEVICE_IDS_H_
