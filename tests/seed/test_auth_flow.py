# test_auth_flow.py
import asyncio
import aiohttp
import json

class AuthFlowTester:
    def __init__(self, base_url):
        self.base_url = base_url
        self.session = None
        self.tokens = {}
    
    async def __aenter__(self):
        self.session = aiohttp.ClientSession()
        return self
    
    async def __aexit__(self, exc_type, exc_val, exc_tb):
        await self.session.close()
    
    async def test_registration(self):
        """Test user registration"""
        data = {
            "email": f"test+{int(time.time())}@example.com",
            "password": "TestPassword123!",
            "name": "Test User"
        }
        
        async with self.session.post(
            f"{self.base_url}/auth/register",
            json=data
        ) as resp:
            if resp.status == 201:
                result = await resp.json()
                self.tokens = {
                    'access_token': result['access_token'],
                    'refresh_token': result['refresh_token']
                }
                print("✅ Registration successful")
                return True
            else:
                error = await resp.text()
                print(f"❌ Registration failed: {error}")
                return False
    
    async def test_login(self, email, password):
        """Test user login"""
        data = {"email": email, "password": password}
        
        async with self.session.post(
            f"{self.base_url}/auth/login",
            json=data
        ) as resp:
            if resp.status == 200:
                result = await resp.json()
                self.tokens = {
                    'access_token': result['access_token'],
                    'refresh_token': result['refresh_token']
                }
                print("✅ Login successful")
                return True
            else:
                error = await resp.text()
                print(f"❌ Login failed: {error}")
                return False
    
    async def test_protected_endpoint(self):
        """Test accessing protected endpoint"""
        headers = {
            'Authorization': f"Bearer {self.tokens['access_token']}"
        }
        
        async with self.session.get(
            f"{self.base_url}/auth/me",
            headers=headers
        ) as resp:
            if resp.status == 200:
                user = await resp.json()
                print(f"✅ Protected endpoint access successful: {user['email']}")
                return True
            else:
                error = await resp.text()
                print(f"❌ Protected endpoint access failed: {error}")
                return False
    
    async def test_token_refresh(self):
        """Test token refresh"""
        data = {"refresh_token": self.tokens['refresh_token']}
        
        async with self.session.post(
            f"{self.base_url}/auth/refresh",
            json=data
        ) as resp:
            if resp.status == 200:
                result = await resp.json()
                self.tokens.update({
                    'access_token': result['access_token'],
                    'refresh_token': result['refresh_token']
                })
                print("✅ Token refresh successful")
                return True
            else:
                error = await resp.text()
                print(f"❌ Token refresh failed: {error}")
                return False
    
    async def run_full_test(self):
        """Run complete authentication flow test"""
        print("🔄 Starting authentication flow test...\n")
        
        # Test registration
        if not await self.test_registration():
            return False
        
        # Test protected endpoint access
        if not await self.test_protected_endpoint():
            return False
        
        # Test token refresh
        if not await self.test_token_refresh():
            return False
        
        # Test protected endpoint with new token
        if not await self.test_protected_endpoint():
            return False
        
        print("\n🎉 All authentication tests passed!")
        return True

# Usage
async def main():
    async with AuthFlowTester("http://localhost:8000") as tester:
        await tester.run_full_test()

if __name__ == "__main__":
    import time
    asyncio.run(main())
